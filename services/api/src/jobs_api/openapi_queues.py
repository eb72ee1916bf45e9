"""The ``/queues`` part of the OpenAPI document (merged into it by :func:`jobs_api.openapi.build_spec`)."""

from __future__ import annotations

from typing import Any

from jobs_core.histogram import PERCENTILES, RELATIVE_ERROR
from jobs_core.model import MAX_PRIORITY, MIN_PRIORITY

from jobs_api.openapi_parts import FORBIDDEN, json_body, json_errors, json_request, op, problem

#: Highest concurrency cap ``PUT /queues/<name>/cap`` accepts.
MAX_QUEUE_CAP = 100_000
QUEUE_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"

_COUNT = {"type": "integer", "minimum": 0}

SCHEMAS: dict[str, Any] = {
    "Queue": {
        "type": "object",
        "description": "One queue as operators see it (counts over every tenant).",
        "required": [
            "name",
            "waiting_by_priority",
            "waiting",
            "delayed",
            "running",
            "paused",
            "cap",
            "workers",
            "oldest_waiting_age_seconds",
            "finished_last_minute",
            "failed_last_minute",
        ],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "waiting_by_priority": {
                "type": "object",
                "description": f"Jobs waiting to start per priority ('{MAX_PRIORITY}' highest .. '{MIN_PRIORITY}'), "
                "including those held by a pause.",
                "propertyNames": {"pattern": "^[0-9]$"},
                "additionalProperties": _COUNT,
            },
            "waiting": {**_COUNT, "description": "Jobs waiting to start (sum of waiting_by_priority)."},
            "delayed": {**_COUNT, "description": "Jobs whose delay or retry back-off has not passed yet."},
            "running": {**_COUNT, "description": "Jobs a worker holds now."},
            "paused": {"type": "boolean", "description": "No worker starts this queue's jobs while true."},
            "cap": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "At most this many of the queue's jobs run at once, cluster-wide; null = no cap.",
            },
            "workers": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids of the live workers consuming this queue.",
            },
            "oldest_waiting_age_seconds": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "Age of the oldest job waiting to start; null when none waits.",
            },
            "finished_last_minute": {**_COUNT, "description": "Jobs that ended (any outcome) in the last 60 s."},
            "failed_last_minute": {**_COUNT, "description": "Jobs that failed in the last 60 s."},
            "unrunnable": {
                **_COUNT,
                "description": "Jobs set aside because no live worker of the queue offers their task.",
            },
            "run_time": {
                "allOf": [{"$ref": "#/components/schemas/RunTime"}],
                "type": "object",
                "description": "GET /queues/{name} only: run-time percentiles of the queue's jobs (every task), "
                "and of each task in `tasks`.",
                "properties": {
                    "tasks": {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/components/schemas/RunTime"},
                        "description": "Task name -> its percentiles in this queue.",
                    },
                },
            },
        },
    },
    "RunTime": {
        "type": "object",
        "description": "Run-time percentiles of jobs that ended in the last hour and day, from per-minute "
        "histograms the workers write with each outcome (4 log-spaced buckets per doubling): each value is "
        f"within {RELATIVE_ERROR:.1%} of the true percentile (within 1 ms under 1 ms). The run time is an "
        "attempt's, from its claim to its outcome (succeeded, failed or cancelled by its worker); jobs the "
        "reaper failed are not counted.",
        "required": ["hour", "day"],
        "properties": {"hour": {"$ref": "#/components/schemas/RunTimeWindow"},
                       "day": {"$ref": "#/components/schemas/RunTimeWindow"}},
    },
    "RunTimeWindow": {
        "type": "object",
        "required": ["count", "p50_ms", "p95_ms", "p99_ms"],
        "additionalProperties": False,
        "properties": {
            "count": {**_COUNT, "description": "Jobs with a run time that ended in the window."},
            **{f"p{p}_ms": {"type": ["number", "null"], "minimum": 0,
                            "description": f"{p}th percentile run time in ms; null when no job ended."}
               for p in PERCENTILES},
        },
    },
    "QueueList": {
        "type": "object",
        "required": ["queues"],
        "additionalProperties": False,
        "properties": {"queues": {"type": "array", "items": {"$ref": "#/components/schemas/Queue"}}},
    },
    "QueueCap": {
        "type": "object",
        "description": "The concurrency cap of a queue.",
        "required": ["cap"],
        "additionalProperties": False,
        "properties": {
            "cap": {
                "type": ["integer", "null"],
                "minimum": 1,
                "maximum": MAX_QUEUE_CAP,
                "description": "At most this many of the queue's jobs run at once across the cluster (a worker "
                "that dies frees its slot when its lease expires); null removes the cap. To stop a queue, "
                "pause it: a queue capped low still counts as work for the autoscaler.",
            }
        },
    },
}

_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": QUEUE_NAME_PATTERN},
    "description": "Queue name. A queue no task, worker or setting names is 404.",
}
_NOT_FOUND = {"404": problem("No such queue.")}


def _change(
    summary: str, operation_id: str, done: str, responses: dict[str, Any] | None = None, **more: Any
) -> dict[str, Any]:
    return op(
        summary,
        {"200": json_body("Queue", done), **_NOT_FOUND, **FORBIDDEN, **(responses or {})},
        operationId=operation_id,
        tags=["queues"],
        parameters=[_NAME],
        **more,
    )


PATHS: dict[str, Any] = {
    "/queues": {
        "get": op(
            "List the queues with their statistics",
            {"200": json_body("QueueList", "Every known queue, by name.")},
            operationId="listQueues",
            tags=["queues"],
            ),
    },
    "/queues/{name}": {
        "get": op(
            "Get one queue's statistics",
            {"200": json_body("Queue", "The queue."), **_NOT_FOUND},
            operationId="getQueue",
            tags=["queues"],
                parameters=[_NAME],
        ),
    },
    "/queues/{name}/pause": {
        "post": _change(
            "Pause a queue (admin): it accepts jobs, no worker starts them, the autoscaler sees no work",
            "pauseQueue",
            "Paused (also when it already was).",
        ),
    },
    "/queues/{name}/resume": {
        "post": _change(
            "Resume a paused queue (admin); its jobs keep their order",
            "resumeQueue",
            "Running again (also when it was not paused).",
        ),
    },
    "/queues/{name}/cap": {
        "put": _change(
            "Set or remove a queue's concurrency cap (admin)",
            "setQueueCap",
            "The cap is set.",
            {
                **json_errors(),
                "422": problem(f"The body is not {{\"cap\": <1..{MAX_QUEUE_CAP} or null>}}."),
            },
            requestBody=json_request("QueueCap", {"cap": 2}),
        ),
    },
}
