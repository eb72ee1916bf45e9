"""Checks every response the tests see against the OpenAPI document the API serves at /openapi.json.

For a documented operation: the status code must be documented, the content type must be one of that
response's media types, and a JSON body must validate against its schema. Any problem+json response (also
for undocumented paths, e.g. a 404 for an unknown URL) must validate against ``Problem``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_URI = "urn:jobs-api:openapi"


class Contract:
    """The OpenAPI document, ready to validate responses."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry: Registry = Registry().with_resource(SPEC_URI, resource)
        self.routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in spec["paths"]]
        self.checked = 0

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        wrapped = (
            {"$ref": f"{SPEC_URI}#/components/schemas/{schema['$ref'].rsplit('/', 1)[1]}"}
            if ("$ref" in schema)
            else schema
        )
        return Draft202012Validator(wrapped, registry=self.registry, format_checker=FormatChecker())

    def template(self, path: str) -> str | None:
        for regex, template in self.routes:
            if regex.match(path):
                return template
        return None

    def check(self, method: str, path: str, status: int, content_type: str, body: bytes) -> None:
        """Raise AssertionError when the response does not match the document."""
        media = content_type.split(";")[0].strip()
        template = self.template(path)
        op = self.spec["paths"].get(template, {}).get(method.lower()) if template else None
        if media == "application/problem+json":
            problem = orjson.loads(body)
            self._validate({"$ref": "#/components/schemas/Problem"}, problem, f"{method} {path} {status}")
            assert problem["status"] == status, f"problem status {problem['status']} != HTTP {status}"
        if op is None or method == "HEAD":
            return
        responses = op["responses"]
        assert str(status) in responses, f"{method} {template}: status {status} is not documented"
        content = responses[str(status)].get("content", {})
        if not body and not content:
            return
        if media not in content and "*/*" not in content:
            raise AssertionError(f"{method} {template} {status}: content type {media} not documented")
        schema = content.get(media, content.get("*/*", {})).get("schema", {})
        if media.endswith("json") and schema:
            self._validate(schema, orjson.loads(body), f"{method} {path} {status}")
        self.checked += 1

    def _validate(self, schema: dict[str, Any], instance: Any, where: str) -> None:
        errors = list(self.validator(schema).iter_errors(instance))
        if errors:
            raise AssertionError(f"{where}: body does not match /openapi.json: {[e.message for e in errors]}")
