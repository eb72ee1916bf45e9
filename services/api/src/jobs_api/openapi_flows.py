"""OpenAPI parts of schedules, workflows and webhooks; merged into the document by ``openapi.build_spec``.

As with ``SubmitRequest``, the request schemas here are the ones the views validate bodies against.
"""

from __future__ import annotations

from typing import Any

from jobs_core.config import MAX_ATTEMPTS_LIMIT, MAX_TIMEOUT_SECONDS
from jobs_core.schedules import (
    DEFAULT_CATCHUP_WINDOW_SECONDS,
    MAX_CATCHUP_WINDOW_SECONDS,
    MAX_CRON_LENGTH,
    CatchUp,
    Overlap,
)

from jobs_api.openapi_parts import (
    _NULLABLE_TIMESTAMP,
    _TIMESTAMP,
    FORBIDDEN,
    IDEMPOTENT_REPLAYED,
    MAX_TASK_NAME_LENGTH,
    RETRY_AFTER,
    SECURITY,
    idempotency_key,
    json_body,
    op,
    problem,
)

_SCHEDULE_FIELDS: dict[str, Any] = {
    "task": {"type": "string", "minLength": 1, "maxLength": MAX_TASK_NAME_LENGTH,
             "description": "Name of a published task (GET /tasks)."},
    "params": {"type": "object", "description": "Task parameters (validated as on POST /jobs). Default {}."},
    "cron": {"type": "string", "minLength": 1, "maxLength": MAX_CRON_LENGTH,
             "description": "Cron expression: 5 fields (minute hour day month weekday), or 6 with seconds "
             "last; @hourly, @daily ... accepted (parsed by croniter)."},
    "timezone": {"type": "string", "minLength": 1, "maxLength": 64,
                 "description": "IANA time zone the expression is evaluated in. Default UTC."},
    "priority": {"type": ["integer", "null"], "minimum": 0, "maximum": 9,
                 "description": "Priority of the jobs (0..9, higher first). Default: the default priority."},
    "catchup": {"type": "string", "enum": [c.value for c in CatchUp],
                "description": "Missed ticks after an outage: skip (none; a tick fires only on time, within "
                "JOBS_SCHEDULE_GRACE_SECONDS), one (the latest within the window), all (every one within the "
                "window, oldest first). Default one."},
    "catchup_window": {"type": "integer", "minimum": 1, "maximum": MAX_CATCHUP_WINDOW_SECONDS,
                       "description": f"Seconds back that missed ticks are considered. Default "
                       f"{DEFAULT_CATCHUP_WINDOW_SECONDS}."},
    "overlap": {"type": "string", "enum": [o.value for o in Overlap],
                "description": "allow: enqueue every tick; skip: skip a tick while the previous tick's job is "
                "still queued or running. Default allow."},
    "max_attempts": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_ATTEMPTS_LIMIT},
    "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECONDS},
}

SCHEMAS: dict[str, Any] = {
    "ScheduleRequest": {
        "type": "object",
        "description": "A schedule's definition.",
        "required": ["task", "cron"],
        "additionalProperties": False,
        "properties": {**_SCHEDULE_FIELDS, "paused": {"type": "boolean", "description": "Default: unchanged "
                                                      "(false for a new schedule)."}},
    },
    "Schedule": {
        "type": "object",
        "required": [*_SCHEDULE_FIELDS, "name", "paused", "created_at", "updated_at", "next_runs", "last_tick",
                     "last_job", "fired", "skipped", "skipped_full", "last_skipped_full", "links"],
        "additionalProperties": False,
        "properties": {
            **_SCHEDULE_FIELDS,
            "name": {"type": "string"},
            "paused": {"type": "boolean"},
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "next_runs": {"type": "array", "items": _TIMESTAMP, "description": "The next 5 ticks (none while "
                          "paused)."},
            "last_tick": {**_NULLABLE_TIMESTAMP, "description": "The last tick that enqueued a job."},
            "last_job": {"type": ["string", "null"], "format": "uuid", "description": "That job's id."},
            "fired": {"type": "integer", "minimum": 0, "description": "Ticks that enqueued a job."},
            "skipped": {"type": "integer", "minimum": 0,
                        "description": "Ticks passed over by the catch-up or overlap policy, or backpressure."},
            "skipped_full": {"type": "integer", "minimum": 0,
                             "description": "Of those, ticks skipped because the task's queue was at "
                             "JOBS_MAX_PENDING or the tenant at JOBS_MAX_PENDING_PER_TENANT (never queued later)."},
            "last_skipped_full": {**_NULLABLE_TIMESTAMP, "description": "The last tick skipped so."},
            "links": {"type": "object", "required": ["self", "last_job"], "additionalProperties": False,
                      "properties": {"self": {"type": "string"}, "last_job": {"type": ["string", "null"]}}},
        },
    },
    "ScheduleList": {
        "type": "object",
        "required": ["schedules"],
        "additionalProperties": False,
        "properties": {"schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}},
    },
}

_REF = {"type": "string", "minLength": 1, "maxLength": 64}
_EDGE = {"type": "string", "enum": ["fail", "ignore"],
         "description": "fail (default): a failed or cancelled dependency cancels this node, transitively; "
         "ignore: it runs anyway."}
SCHEMAS.update({
    "WorkflowRequest": {
        "type": "object",
        "description": "A DAG of jobs, submitted atomically.",
        "required": ["nodes"],
        "additionalProperties": False,
        "properties": {"nodes": {"type": "array", "minItems": 1, "maxItems": 1000, "items": {
            "type": "object",
            "required": ["name", "task"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,64}$",
                         "description": "Node name, unique in the workflow; what depends_on refers to."},
                "task": _SCHEDULE_FIELDS["task"],
                "params": _SCHEDULE_FIELDS["params"],
                "max_attempts": _SCHEDULE_FIELDS["max_attempts"],
                "timeout": _SCHEDULE_FIELDS["timeout"],
                "priority": _SCHEDULE_FIELDS["priority"],
                "callback_url": {"type": "string", "minLength": 1, "maxLength": 2048,
                                 "description": "Where a signed webhook is POSTed each time this node's job ends "
                                 "(also when a failed dependency cancels it); checked as on POST /jobs."},
                "depends_on": {"type": "array", "maxItems": 1000, "description": "Node names or existing job ids "
                               "(of the caller's tenant), or {node|job, on_failure}.", "items": {"oneOf": [
                                   _REF,
                                   {"type": "object", "required": ["node"], "additionalProperties": False,
                                    "properties": {"node": _REF, "on_failure": _EDGE}},
                                   {"type": "object", "required": ["job"], "additionalProperties": False,
                                    "properties": {"job": _REF, "on_failure": _EDGE}},
                               ]}},
            },
        }}},
    },
    "Workflow": {
        "type": "object",
        "required": ["id", "status", "created_at", "nodes", "links"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "status": {"type": "string", "enum": ["running", "succeeded", "failed", "cancelled"],
                       "description": "running while any node is waiting, queued or running; then failed if any "
                       "failed, cancelled if any was cancelled, else succeeded."},
            "created_at": _TIMESTAMP,
            "nodes": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "job_id", "status", "depends_on", "links"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string"},
                    "job_id": {"type": "string", "format": "uuid"},
                    "status": {"type": "string", "description": "The job's status (waiting until its "
                               "dependencies end), or expired once its record is gone."},
                    "depends_on": {"type": "array", "items": {
                        "type": "object", "required": ["ref", "job", "on_failure"], "additionalProperties": False,
                        "properties": {"ref": {"type": "string"}, "job": {"type": "string"},
                                       "on_failure": {"type": "string"}}}},
                    "links": {"type": "object"},
                },
            }},
            "links": {"type": "object"},
        },
    },
})

_NAME = {"name": "name", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,64}$"}, "description": "Schedule name."}
_SCHEDULE_404 = problem("No such schedule (or another tenant's).")


def _schedule_op(summary: str, op_id: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return op(summary, {**responses, **FORBIDDEN}, operationId=op_id, tags=["schedules"], security=SECURITY,
               **more)


PATHS: dict[str, Any] = {
    "/schedules": {
        "get": _schedule_op("List the tenant's schedules", "listSchedules",
                            {"200": json_body("ScheduleList", "Every schedule, by name.")}),
    },
    "/schedules/{name}": {
        "put": _schedule_op(
            "Create or replace a schedule", "putSchedule",
            {
                "200": json_body("Schedule", "Replaced (or unchanged)."),
                "201": json_body("Schedule", "Created.", {"Location": {"schema": {"type": "string"}}}),
                "400": problem("Malformed JSON or schedule name."),
                "409": problem("The tenant has JOBS_MAX_SCHEDULES_PER_TENANT schedules already."),
                "413": problem("Body larger than JOBS_MAX_BODY_BYTES."),
                "415": problem("Content-Type is not application/json."),
                "422": problem("Invalid definition: unknown task, params failing its schema, bad cron "
                                "expression or time zone."),
            },
            parameters=[_NAME],
            requestBody={"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/ScheduleRequest"},
                "example": {"task": "echo", "params": {"report": "daily"}, "cron": "0 6 * * *",
                            "timezone": "Europe/Paris"}}}},
        ),
        "get": _schedule_op("Get a schedule (next run times, last fired tick)", "getSchedule",
                            {"200": json_body("Schedule", "The schedule."), "404": _SCHEDULE_404}, parameters=[_NAME]),
        "delete": _schedule_op("Delete a schedule (its jobs stay)", "deleteSchedule",
                               {"204": {"description": "Deleted."}, "404": _SCHEDULE_404}, parameters=[_NAME]),
    },
    "/schedules/{name}/pause": {
        "post": _schedule_op("Pause a schedule", "pauseSchedule",
                             {"200": json_body("Schedule", "Paused."), "404": _SCHEDULE_404}, parameters=[_NAME]),
    },
    "/schedules/{name}/resume": {
        "post": _schedule_op("Resume a schedule from now (ticks while paused are not caught up)", "resumeSchedule",
                             {"200": json_body("Schedule", "Resumed."), "404": _SCHEDULE_404}, parameters=[_NAME]),
    },
}

_WF_ID = {"name": "workflow_id", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "Workflow id. Unknown, malformed or another tenant's: 404."}
_WF_404 = problem("No such workflow (or another tenant's).")


def _workflow_op(summary: str, op_id: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return op(summary, {**responses, **FORBIDDEN}, operationId=op_id, tags=["workflows"], security=SECURITY,
               **more)


PATHS.update({
    "/workflows": {
        "post": _workflow_op(
            "Submit a workflow (a DAG of jobs) atomically", "submitWorkflow",
            {
                "201": json_body("Workflow", "Created: nodes without dependencies are queued, the others waiting. "
                                 "A repeat with the same Idempotency-Key answers with the first workflow (with "
                                 "Idempotent-Replayed: true).",
                                 {"Location": {"schema": {"type": "string"}}, **IDEMPOTENT_REPLAYED}),
                "400": problem("Malformed JSON."),
                "413": problem("Body larger than JOBS_MAX_BODY_BYTES."),
                "415": problem("Content-Type is not application/json."),
                "422": problem("Invalid body, unknown task, params failing a task's schema, a dependency cycle "
                                "(the nodes named), an unknown node name or job id, duplicate node names."),
                "429": problem("Backpressure: the workflow's nodes (all of them, waiting ones too) would take a "
                               "queue past JOBS_MAX_PENDING or the tenant past JOBS_MAX_PENDING_PER_TENANT; "
                               "nothing was created.", RETRY_AFTER),
            },
            parameters=[idempotency_key("Makes the submission safe to repeat: the same body under the same key "
                                        "within JOBS_IDEMPOTENCY_TTL_SECONDS returns the first workflow; another "
                                        "body is 422.")],
            requestBody={"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/WorkflowRequest"},
                "example": {"nodes": [{"name": "fetch", "task": "echo"},
                                      {"name": "report", "task": "echo", "depends_on": ["fetch"]}]}}}},
        ),
    },
    "/workflows/{workflow_id}": {
        "get": _workflow_op("Get a workflow: every node's status", "getWorkflow",
                            {"200": json_body("Workflow", "The workflow."), "404": _WF_404}, parameters=[_WF_ID]),
        "delete": _workflow_op("Cancel every unfinished node of a workflow", "cancelWorkflow",
                               {"200": json_body("Workflow", "Waiting and queued nodes cancelled, running ones "
                                             "asked to stop."), "404": _WF_404}, parameters=[_WF_ID]),
    },
})

TAGS = [{"name": "schedules", "description": "Cron schedules of the caller's tenant."},
        {"name": "workflows", "description": "DAGs of jobs of the caller's tenant."}]
