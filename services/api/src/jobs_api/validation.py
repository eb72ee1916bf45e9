"""Request validation helpers: JSON bodies and JSON Schema errors as ``{"path", "message"}`` items."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema_rs
import orjson
from flask import request
from jobs_core.model import TaskInfo
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry
from werkzeug.exceptions import RequestEntityTooLarge

from jobs_api.openapi_parts import MAX_IDEMPOTENCY_KEY_LENGTH
from jobs_api.problems import Problem, validation_problem

_IDEMPOTENCY_KEY = re.compile(rf"^[\x21-\x7e]{{1,{MAX_IDEMPOTENCY_KEY_LENGTH}}}$")

MAX_ERRORS = 50


def _pointer(base: str, parts: Iterable[Any]) -> str:
    path = base + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
    return path or "/"


@functools.lru_cache(maxsize=256)
def _compiled(schema_json: bytes) -> tuple[Validator, Any]:
    schema = orjson.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema, format_checker=FormatChecker())
    # An empty registry: a "$ref" to a URL is an error, never fetched (jsonschema's default still fetches).
    validator: Validator = cls(schema, registry=Registry())
    return validator, _plain_validator(schema) if cls is Draft202012Validator else None


#: Keywords a *plain* schema may use (see :func:`_plain`): their meaning is the same in ``jsonschema`` and
#: ``jsonschema_rs`` (no regex dialect, no ``format``, no references, no value equality, no float division),
#: which ``tests/api/test_validation_parity.py`` checks on edge cases (huge and float integers, bounds at
#: 2**53 and 2**63, code points against graphemes).
_PLAIN_KEYWORDS = frozenset({
    "type", "required", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    "minItems", "maxItems", "minProperties", "maxProperties",
})
#: Annotations: never change whether an instance is valid (their values are not schemas: not walked).
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "$comment", "deprecated", "readOnly",
                          "writeOnly"})


def _plain(schema: Any) -> bool:
    """Whether ``schema`` uses only :data:`_PLAIN_KEYWORDS`, annotations and the subschemas of ``properties``,
    ``items`` and ``additionalProperties`` (a property named like a keyword is a name, not a keyword)."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict):
        return False
    for keyword, value in schema.items():
        if keyword in _PLAIN_KEYWORDS or keyword in _ANNOTATIONS:
            continue
        if keyword in ("items", "additionalProperties"):
            if not _plain(value):
                return False
        elif keyword == "properties":
            if not (isinstance(value, dict) and all(_plain(v) for v in value.values())):
                return False
        else:
            return False
    return True


def _plain_validator(schema: Any) -> Any:
    """A compiled ``jsonschema_rs`` validator of a plain draft 2020-12 schema (None for any other): a task's
    params are checked on every submission, and ``jsonschema`` walking even ``{"type": "object"}`` cost ~8 µs
    per job (a 500-job batch: 4 ms; bench/analysis.md, profile 30)."""
    if not _plain(schema):
        return None
    try:
        return jsonschema_rs.Draft202012Validator(schema)
    except Exception:  # e.g. a bound Rust cannot hold: jsonschema alone judges
        return None


class TaskSchemaError(Exception):
    """A task's published params schema cannot be used (the task cannot take jobs until it is fixed)."""


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why a published params schema is unusable, or None."""
    try:
        list(_validator(schema).iter_errors({}))  # e.g. a bad $ref
    except Exception as e:  # invalid schema: say why instead of failing the listing
        return f"its params_schema is invalid: {getattr(e, 'message', None) or e}"[:500]
    return None


def task_params_errors(info: TaskInfo, params: Any, base: str = "/params") -> list[dict[str, str]]:
    """:func:`schema_errors` for params against the schema a worker published for the task;
    :class:`TaskSchemaError` when the published entry or its schema is unusable (invalid, an unresolvable
    ``$ref``, a pattern the regex engine refuses)."""
    if info.problem:
        raise TaskSchemaError(info.problem)
    try:
        return schema_errors(info.params_schema, params, base)
    except Exception as e:  # anything the published schema makes the validator raise is the schema's fault
        message = getattr(e, "message", None) or str(e)
        raise TaskSchemaError(f"{type(e).__name__}: {message}"[:500]) from e


#: id(schema) -> (schema, its validators): the schemas seen lately, found without re-encoding them.
_RECENT: dict[int, tuple[Mapping[str, Any], tuple[Validator, Any]]] = {}


def _validators(schema: Mapping[str, Any]) -> tuple[Validator, Any]:
    """``schema``'s ``jsonschema`` validator and, for a plain schema, its ``jsonschema_rs`` one (else None)."""
    # Keyed by identity first (the catalogue and the API's own schemas are long-lived objects, never
    # mutated), then by content: encoding the schema to find its validator cost as much as validating.
    hit = _RECENT.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    validators = _compiled(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    if len(_RECENT) >= 256:  # catalogue refreshes bring new objects: keep the map small
        _RECENT.clear()
    _RECENT[id(schema)] = (schema, validators)
    return validators


def _validator(schema: Mapping[str, Any]) -> Validator:
    return _validators(schema)[0]


def schema_errors(schema: Mapping[str, Any], instance: Any, base: str = "") -> list[dict[str, str]]:
    """Every way ``instance`` fails ``schema`` (up to :data:`MAX_ERRORS`), paths prefixed with ``base``.

    Validators are compiled once per distinct schema. JSON Schema's ``integer`` and ``number`` never
    accept booleans, so ``true`` is refused where a count is expected. A plain schema (:func:`_plain`) is
    first asked of its compiled ``jsonschema_rs`` validator; only an instance it finds invalid (or cannot
    take) is walked by ``jsonschema``, so the errors are worded as before.
    """
    full, fast = _validators(schema)
    if fast is not None and _fast_valid(fast, instance):
        return []
    return _errors(full, instance, base)


def _fast_valid(fast: Any, instance: Any) -> bool:
    try:
        return bool(fast.is_valid(instance))
    except Exception:  # e.g. a number Rust cannot hold, nesting too deep: jsonschema judges
        return False


def _errors(validator: Validator, instance: Any, base: str) -> list[dict[str, str]]:
    errors: list[ValidationError] = sorted(
        validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return [{"path": _pointer(base, e.absolute_path), "message": _message(e)} for e in errors[:MAX_ERRORS]]


class FixedSchema:
    """One of the API's own request schemas, checked on the hot path (``POST /jobs``, each job of a batch).

    A compiled Rust validator (``jsonschema_rs``, ~100x faster than ``jsonschema`` here) answers whether
    an instance is valid; only an invalid one is walked by ``jsonschema`` for the errors, so the messages
    are those of :func:`schema_errors`. Only for schemas written here: keywords whose meaning could differ
    between the two (``pattern``'s regex dialect, ``format``) are refused at construction, and
    ``tests/api/test_validation_parity.py`` checks that both agree on valid and invalid instances.
    """

    _UNSAFE = frozenset({"pattern", "patternProperties", "format", "$ref", "$dynamicRef"})

    def __init__(self, schema: Mapping[str, Any]) -> None:
        unsafe = self._UNSAFE & _keywords(schema)
        if unsafe:
            raise ValueError(f"not a fixed-schema candidate: uses {sorted(unsafe)}")
        self.schema = schema
        self._fast = jsonschema_rs.validator_for(dict(schema))
        self._full = _validator(schema)

    def errors(self, instance: Any, base: str = "") -> list[dict[str, str]]:
        """:func:`schema_errors` of ``instance``."""
        try:
            if self._fast.is_valid(instance):
                return []
        except (ValueError, TypeError, OverflowError):  # e.g. a number Rust cannot hold: jsonschema judges
            pass
        return _errors(self._full, instance, base)


def _keywords(schema: Any) -> set[str]:
    if isinstance(schema, Mapping):
        return {*schema, *(k for v in schema.values() for k in _keywords(v))}
    if isinstance(schema, list):
        return {k for v in schema for k in _keywords(v)}
    return set()


_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)


def _json_type(value: Any) -> str:
    for cls, name in _JSON_TYPES:
        if isinstance(value, cls):
            return name
    return type(value).__name__


def _message(e: ValidationError) -> str:
    # jsonschema words type errors with Python reprs ("True is not of type 'integer'"); say it in JSON terms.
    if e.validator == "type":
        expected = e.validator_value if isinstance(e.validator_value, str) else " or ".join(e.validator_value)
        return f"must be of type {expected}, not {_json_type(e.instance)}"
    return str(e.message)


def is_json(mimetype: str) -> bool:
    """Whether a body of this media type (lower case, without parameters) is read as JSON."""
    return mimetype == "application/json" or mimetype.endswith("+json")


def parse_json(data: bytes) -> Any:
    """``data`` decoded as JSON; a 400 when it is not JSON (the fast path of ``POST /jobs`` shares it)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise Problem(400, "Bad Request", f"the body is not valid JSON: {e}", slug="malformed-json") from e


def read_json_body() -> Any:
    """The request's JSON body: 415 unless it is JSON, 413 when too large, 400 when malformed."""
    mimetype = request.mimetype or ""
    if not is_json(mimetype):
        raise Problem(
            415,
            "Unsupported Media Type",
            f"send the body as application/json (got {mimetype or 'no Content-Type'})",
            slug="unsupported-media-type",
        )
    data = request.get_data(cache=False)  # 413 when Content-Length is over MAX_CONTENT_LENGTH
    limit = request.max_content_length
    # A chunked body (no Content-Length) is cut at the limit without an error: bytes after it mean 413.
    chunked = request.content_length is None
    if chunked and limit is not None and len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return parse_json(data)


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within bounds, else a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.strip().isdigit():
        raise validation_problem(
            [{"path": f"/query/{name}", "message": f"must be an integer from {minimum} to {maximum}"}],
            status=400,
        )
    value = int(raw)
    if not minimum <= value <= maximum:
        raise validation_problem(
            [{"path": f"/query/{name}", "message": f"must be an integer from {minimum} to {maximum}"}],
            status=400,
        )
    return value


def query_seconds(name: str, maximum: float) -> float:
    """A non-negative number of seconds (at most ``maximum``) from the query string; 0 when absent."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= maximum:
        raise validation_problem(
            [{"path": f"/query/{name}", "message": f"must be a number of seconds from 0 to {maximum:g}"}],
            status=400,
        )
    return value


def idempotency_key() -> str | None:
    """The request's ``Idempotency-Key`` header (None when absent); a malformed one is 400."""
    return checked_idempotency_key(request.headers.get("Idempotency-Key"))


def checked_idempotency_key(raw: str | None) -> str | None:
    """An ``Idempotency-Key`` header value (None when absent) once checked; a malformed one is 400."""
    if raw is None:
        return None
    if not _IDEMPOTENCY_KEY.match(raw):
        raise validation_problem(
            [
                {
                    "path": "/headers/Idempotency-Key",
                    "message": f"must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters",
                }
            ],
            status=400,
        )
    return raw
