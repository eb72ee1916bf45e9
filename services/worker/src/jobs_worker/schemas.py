"""Checking a task's params schema (at worker start and in local test runs), and validating params with it.

Imported only where needed: the JSON Schema library is slow to import, and slot children never need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobs_core.errors import TaskDefinitionError
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry

from jobs_worker.tasks import Task


def params_validator(schema: Mapping[str, Any]) -> Validator:
    """A validator for ``schema`` (draft 2020-12 unless ``$schema`` says otherwise); a ``$ref`` to a URL is
    an error, never fetched. Raises ``SchemaError`` for an invalid schema (regex patterns included)."""
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema, format_checker=FormatChecker())
    validator: Validator = cls(schema, registry=Registry())
    return validator


def check_params_schema(task: Task) -> None:
    """Raise :class:`TaskDefinitionError` (one line) when ``task``'s params schema, or a default it declares,
    would make the API refuse or fail on its jobs."""
    info, where = task.info, task.where
    try:
        validator = params_validator(info.params_schema)
    except SchemaError as e:
        path = "/".join(str(p) for p in e.absolute_path)
        raise TaskDefinitionError(f"{where}: invalid params_schema at /{path}: {e.message}") from None
    try:
        errors = list(validator.iter_errors(dict(info.defaults)))
    except Exception as e:  # unresolvable $ref, a pattern the regex engine refuses, ...
        raise TaskDefinitionError(f"{where}: params_schema cannot be used: {type(e).__name__}: {e}") from None
    for error in errors:
        if error.validator != "required":  # defaults need not fill every required param
            path = "/".join(str(p) for p in error.absolute_path)
            raise TaskDefinitionError(f"{where}: default /{path} fails params_schema: {error.message}")
