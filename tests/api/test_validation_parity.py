"""The submit hot path's compiled validator (``FixedSchema``: ``jsonschema_rs`` says valid or not,
``jsonschema`` words the errors) answers exactly as ``schema_errors`` does on the API's own schemas."""

from __future__ import annotations

from typing import Any

import pytest
from jobs_api import openapi, openapi_batch
from jobs_api.openapi import MAX_TASK_NAME_LENGTH
from jobs_api.validation import FixedSchema, schema_errors

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
