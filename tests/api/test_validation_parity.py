"""The submit hot path's compiled validator (``FixedSchema``: ``jsonschema_rs`` says valid or not,
``jsonschema`` words the errors) answers exactly as ``schema_errors`` does on the API's own schemas."""

from __future__ import annotations

from typing import Any

import pytest
from jobs_api import openapi, openapi_batch
from jobs_api.openapi import MAX_TASK_NAME_LENGTH
from jobs_api.validation import FixedSchema, _errors, _validators, schema_errors

LONG = "x" * MAX_TASK_NAME_LENGTH
SUBMIT: list[Any] = [
    {"task": "echo"}, {"task": "echo", "params": {"a": [1, {"b": None}]}}, {"task": LONG}, {"task": LONG + "x"},
    {"task": "é" * MAX_TASK_NAME_LENGTH}, {"task": "😀" * MAX_TASK_NAME_LENGTH},
    {"task": "😀" * (MAX_TASK_NAME_LENGTH + 1)}, {"task": "\ud800"}, {"task": ""}, {"task": None}, {"task": 1},
    {}, [], None, "echo", 1, 1.5, True, {"params": {}},
    {"task": "t", "params": []}, {"task": "t", "params": None}, {"task": "t", "params": "x"},
    {"task": "t", "priority": 0}, {"task": "t", "priority": 9}, {"task": "t", "priority": 10},
    {"task": "t", "priority": -1}, {"task": "t", "priority": True}, {"task": "t", "priority": 5.0},
    {"task": "t", "priority": 5.5}, {"task": "t", "priority": 10**30}, {"task": "t", "priority": -(10**30)},
    {"task": "t", "priority": "5"}, {"task": "t", "max_attempts": 0}, {"task": "t", "max_attempts": 1},
    {"task": "t", "max_attempts": False}, {"task": "t", "max_attempts": 10**400},
    {"task": "t", "timeout": 0}, {"task": "t", "timeout": 1e-300}, {"task": "t", "timeout": 1e308},
    {"task": "t", "timeout": -0.0}, {"task": "t", "delay": 0}, {"task": "t", "delay": -1e-9},
    {"task": "t", "delay": 10**20}, {"task": "t", "depends_on": []}, {"task": "t", "depends_on": ["a", "b"]},
    {"task": "t", "depends_on": [""]}, {"task": "t", "depends_on": ["x" * 65]},
    {"task": "t", "depends_on": [{"job": "a"}]}, {"task": "t", "depends_on": [{"job": "a", "on_failure": "ignore"}]},
    {"task": "t", "depends_on": [{"job": "a", "on_failure": "maybe"}]}, {"task": "t", "depends_on": [{}]},
    {"task": "t", "depends_on": [{"job": "a", "extra": 1}]}, {"task": "t", "depends_on": [1, None]},
    {"task": "t", "depends_on": ["a"] * 1001}, {"task": "t", "depends_on": "a"},
    {"task": "t", "callback_url": "https://example.com/h"}, {"task": "t", "callback_url": ""},
    {"task": "t", "callback_url": "h" * 2049}, {"task": "t", "callback_url": 5},
    {"task": "t", "unknown": 1}, {"task": "t", "Task": "t"}, {"task": "t", "params": {}, "priority": 3,
                                                            "max_attempts": 2, "timeout": 1, "delay": 1},
]


@pytest.mark.parametrize("instance", SUBMIT, ids=range(len(SUBMIT)))
def test_submit_request_answers_as_jsonschema(instance: Any) -> None:
    schema = openapi.submit_request_schema()
    assert FixedSchema(schema).errors(instance, "/jobs/3") == schema_errors(schema, instance, "/jobs/3")


def test_the_cases_hold_valid_and_invalid_ones() -> None:
    schema = openapi.submit_request_schema()
    valid = sum(1 for i in SUBMIT if not schema_errors(schema, i))
    assert 10 < valid < len(SUBMIT) - 10


def test_batch_outer_schema_answers_as_jsonschema() -> None:
    schema = openapi_batch.batch_request_schema()
    for instance in ({"jobs": [{}]}, {"jobs": []}, {"jobs": [1] * 1001}, {"jobs": {}}, {}, {"jobs": [1], "x": 1}):
        assert FixedSchema(schema).errors(instance) == schema_errors(schema, instance)


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "^a"}, {"type": "string", "format": "email"},
    {"properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}}, {"patternProperties": {"^x": {}}},
])
def test_schemas_whose_meaning_could_differ_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a fixed-schema candidate"):
        FixedSchema(schema)


# --- tasks' params schemas (published by workers): a plain schema is first asked of jsonschema_rs -------------

#: Plain schemas (only keywords both libraries read alike), as workers publish them.
PLAIN: list[dict[str, Any]] = [
    {"type": "object"},
    {},
    {"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 86400}},
     "additionalProperties": False},
    {"type": "object", "properties": {"limit": {"type": "integer", "minimum": 2}}, "required": ["limit"],
     "additionalProperties": False, "title": "Primes", "description": "x", "default": {"limit": 2}},
    {"type": "object", "properties": {"n": {"type": "integer", "maximum": 9007199254740992,
                                            "exclusiveMinimum": -9223372036854775808}}},
    {"type": "object", "properties": {"s": {"type": ["string", "null"], "minLength": 1, "maxLength": 2},
                                      "a": {"type": "array", "items": {"type": "integer"}, "minItems": 1,
                                            "maxItems": 2}},
     "additionalProperties": {"type": "boolean"}, "minProperties": 1, "maxProperties": 3},
    # a property named like a keyword is a name
    {"type": "object", "properties": {"pattern": {"type": "string"}, "enum": {"type": "number",
                                                                                "exclusiveMaximum": 0.1}}},
]
#: Not plain: jsonschema alone judges them.
NOT_PLAIN: list[dict[str, Any]] = [
    {"type": "string", "pattern": "^a"}, {"type": "string", "format": "email"},
    {"properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}}, {"patternProperties": {"^x": {}}},
    {"enum": [1, 2]}, {"const": 1.0}, {"type": "array", "uniqueItems": True}, {"type": "number", "multipleOf": 0.1},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
    {"anyOf": [{"type": "object"}]}, {"type": "object", "properties": {"a": {"enum": ["x"]}}},
    {"type": "array", "prefixItems": [{"type": "integer"}]}, {"type": "object", "dependentRequired": {"a": ["b"]}},
]
INSTANCES: list[Any] = [
    {}, {"seconds": 1}, {"seconds": -1}, {"seconds": 86400.5}, {"seconds": True}, {"seconds": "1"}, {"x": 1},
    {"limit": 2}, {"limit": 1}, {"limit": 2.0}, {"limit": 2.5}, {"limit": 10**30}, {"limit": -(10**30)},
    {"n": 9007199254740992}, {"n": 9007199254740993}, {"n": 9007199254740992.0}, {"n": 2**63}, {"n": 2**64},
    {"n": -9223372036854775809}, {"n": -9223372036854775808}, {"n": 1e308}, {"n": -0.0}, {"n": None},
    {"s": "😀😀"}, {"s": "é́"}, {"s": "abc"}, {"s": ""}, {"s": None}, {"a": []}, {"a": [1, 2.0]}, {"a": [1, 2.5]},
    {"a": [1, 2, 3]}, {"a": [True]}, {"z": True}, {"z": 1}, {"s": "a", "a": [1], "z": False, "y": True},
    {"pattern": 1}, {"pattern": "x"}, {"enum": 0.1}, {"enum": 0.09}, {"enum": False},
    {"a": {"b": [None, {"c": [1.5, "x"]}]}}, [], "x", 1, None,
]


@pytest.mark.parametrize("schema", PLAIN, ids=range(len(PLAIN)))
def test_plain_task_schemas_answer_as_jsonschema(schema: dict[str, Any]) -> None:
    full, fast = _validators(schema)
    assert fast is not None  # the compiled validator is really asked
    valid = 0
    for instance in INSTANCES:
        expected = _errors(full, instance, "/params")  # what jsonschema alone answers
        assert schema_errors(schema, instance, "/params") == expected, instance
        assert fast.is_valid(instance) == (not expected), instance
        valid += not expected
    assert 0 < valid < len(INSTANCES) or schema == {}


@pytest.mark.parametrize("schema", NOT_PLAIN, ids=range(len(NOT_PLAIN)))
def test_other_task_schemas_are_judged_by_jsonschema_alone(schema: dict[str, Any]) -> None:
    assert _validators(schema)[1] is None
