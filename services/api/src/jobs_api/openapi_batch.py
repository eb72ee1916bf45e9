"""The ``POST /jobs/batch`` part of the OpenAPI document (merged into it by
:func:`jobs_api.openapi.build_spec`); each job of a batch is a ``SubmitRequest`` of ``openapi.py``."""

from __future__ import annotations

import copy
import functools
from typing import Any

from jobs_api.openapi_parts import submission

#: Most jobs one ``POST /jobs/batch`` may hold (the body must also fit JOBS_MAX_BODY_BYTES).
MAX_BATCH_JOBS = 1000

SCHEMAS: dict[str, Any] = {
    "BatchRequest": {
        "type": "object",
        "description": f"Up to {MAX_BATCH_JOBS} jobs queued all together or not at all.",
        "required": ["jobs"],
        "additionalProperties": False,
        "properties": {
            "jobs": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH_JOBS,
                "items": {"$ref": "#/components/schemas/SubmitRequest"},
            }
        },
    },
    "JobBatch": {
        "type": "object",
        "required": ["jobs"],
        "additionalProperties": False,
        "properties": {
            "jobs": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Job"},
                "description": "The queued jobs, in the order of the request.",
            }
        },
    },
}

PATHS: dict[str, Any] = {
    "/jobs/batch": {
        "post": submission(
            f"Submit up to {MAX_BATCH_JOBS} jobs at once, all or none",
            "submitJobs",
            request=(
                "BatchRequest",
                {"jobs": [{"task": "echo", "params": {"n": 1}}, {"task": "sleep", "priority": 9}]},
            ),
            accepted=(
                "JobBatch",
                "Accepted: every job is recorded and queued (also for an Idempotency-Key repeat, which returns "
                "the original jobs with Idempotent-Replayed: true).",
            ),
            invalid="Nothing was queued: the body is not {\"jobs\": [...]}, or some jobs are invalid (each error's "
            "path names the job by index, e.g. /jobs/3/params/limit; invalid_items lists them), or the "
            "Idempotency-Key was used with a different batch.",
            over_cap="The batch does not fit the pending caps; nothing was queued.",
            repeat="A repeat with the same key and batch returns the same jobs.",
        ),
    },
}


@functools.cache
def batch_request_schema() -> dict[str, Any]:
    """The outer shape of ``POST /jobs/batch`` bodies: each job is then checked like ``POST /jobs`` (one
    shared copy: do not mutate)."""
    schema: dict[str, Any] = copy.deepcopy(SCHEMAS["BatchRequest"])
    schema["properties"]["jobs"]["items"] = {}
    return schema
