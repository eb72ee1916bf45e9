"""The OpenAPI 3.1 description of the API, served at ``/openapi.json``.

It is the single source of the request body schema too: ``POST /jobs`` validates its body against
``SubmitRequest`` from here, so the document and the implementation cannot drift apart. The test suite
validates every response body it sees against the response schemas below. The parts of other resources
(``openapi_batch.py``, ``openapi_queues.py``, ``openapi_events.py``) are merged in by :func:`build_spec`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

# re-exported: the submission limits are the settings' limits (JOBS_DEFAULT_MAX_ATTEMPTS, ...)
from jobs_core.config import MAX_ATTEMPTS_LIMIT as MAX_ATTEMPTS_LIMIT
from jobs_core.config import MAX_TIMEOUT_SECONDS as MAX_TIMEOUT_SECONDS
from jobs_core.model import DEFAULT_PRIORITY, MAX_PRIORITY, MIN_PRIORITY, JobStatus

from jobs_api import __version__, openapi_audit, openapi_batch, openapi_events, openapi_queues
from jobs_api.openapi_parts import (
    _NULLABLE_TIMESTAMP,
    _TIMESTAMP,
    FORBIDDEN,
    RETRY_AFTER,
    json_body,
    op,
    problem,
    submission,
)
from jobs_api.openapi_parts import MAX_IDEMPOTENCY_KEY_LENGTH as MAX_IDEMPOTENCY_KEY_LENGTH
from jobs_api.openapi_parts import MAX_TASK_NAME_LENGTH as MAX_TASK_NAME_LENGTH

MAX_DELAY_SECONDS = 7 * 24 * 3600
MAX_WAIT_SECONDS = 60
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200

STATUSES = [s.value for s in JobStatus]

_NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "SubmitRequest": {
        "type": "object",
        "description": "A job to run.",
        "required": ["task"],
        "additionalProperties": False,
        "properties": {
            "task": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_TASK_NAME_LENGTH,
                "description": "Name of a task published by the workers (see GET /tasks).",
            },
            "params": {
                "type": "object",
                "description": "Task parameters, validated against the task's params_schema after the "
                "task's defaults are applied. Default {}.",
            },
            "max_attempts": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_ATTEMPTS_LIMIT,
                "description": "Attempts before the job fails (default: the task's, else JOBS_DEFAULT_MAX_ATTEMPTS).",
            },
            "timeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_TIMEOUT_SECONDS,
                "description": "Seconds one attempt may run before it is killed (default: the task's, else "
                "JOBS_DEFAULT_TIMEOUT_SECONDS).",
            },
            "delay": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_DELAY_SECONDS,
                "description": "Seconds to wait before the job becomes runnable (with depends_on: no earlier "
                "than this after the submission, and not before its dependencies are done). Default 0.",
            },
            "depends_on": {
                "type": "array",
                "maxItems": 1000,
                "description": "Jobs (of the caller's tenant) this one waits for: it is 'waiting' until the last "
                "one ends, then queued; a failed or cancelled one cancels it unless on_failure is ignore. An "
                "id, or {job, on_failure}. With delay, it runs no earlier than delay seconds after the "
                "submission (released before that, it waits in the delayed set). With an Idempotency-Key, a "
                "repeat returns the same job.",
                "items": {"oneOf": [
                    {"type": "string", "minLength": 1, "maxLength": 64},
                    {"type": "object", "required": ["job"], "additionalProperties": False,
                     "properties": {"job": {"type": "string", "minLength": 1, "maxLength": 64},
                                    "on_failure": {"type": "string", "enum": ["fail", "ignore"]}}},
                ]},
            },
            "callback_url": {
                "type": "string",
                "minLength": 1,
                "maxLength": 2048,
                "description": "Where a signed webhook (Standard Webhooks) is POSTed each time the job ends. "
                "https:// only unless JOBS_WEBHOOK_ALLOW_HTTP; non-public addresses refused unless "
                "JOBS_WEBHOOK_ALLOW_PRIVATE. In a batch, every job names the same one or none. Part of what "
                "an Idempotency-Key's repeat must match.",
            },
            "priority": {
                "type": "integer",
                "minimum": MIN_PRIORITY,
                "maximum": MAX_PRIORITY,
                "description": f"{MIN_PRIORITY}..{MAX_PRIORITY}, higher runs first, first in first out within a "
                f"priority, per queue. Default {DEFAULT_PRIORITY}. Strict: a steady flow of higher priorities "
                "starves lower ones (give such work its own queue and pool).",
            },
        },
    },
    "JobError": {
        "type": "object",
        "required": ["type", "message", "traceback"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "description": "Exception type, or WorkerLost / Timeout / ..."},
            "message": {"type": "string"},
            "traceback": _NULLABLE_STRING,
        },
    },
    "Job": {
        "type": "object",
        "required": [
            "id",
            "task",
            "queue",
            "priority",
            "params",
            "status",
            "attempts",
            "max_attempts",
            "timeout",
            "progress",
            "message",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "worker",
            "cancel_requested",
            "tenant",
            "links",
        ],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "task": {"type": "string"},
            "queue": {"type": "string", "description": "The queue the task routes its jobs to."},
            "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
            "params": {"type": "object"},
            "status": {"type": "string", "enum": STATUSES},
            "attempts": {"type": "integer", "minimum": 0},
            "max_attempts": {"type": "integer", "minimum": 1},
            "timeout": {"type": "number", "description": "Seconds per attempt."},
            "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "message": _NULLABLE_STRING,
            "created_at": _TIMESTAMP,
            "started_at": _NULLABLE_TIMESTAMP,
            "finished_at": _NULLABLE_TIMESTAMP,
            "error": {"oneOf": [{"$ref": "#/components/schemas/JobError"}, {"type": "null"}]},
            "worker": _NULLABLE_STRING,
            "cancel_requested": {
                "type": "boolean",
                "description": "True once DELETE asked a running job to stop; it becomes cancelled "
                "within a worker heartbeat.",
            },
            "tenant": {"type": "string", "description": "The tenant that owns the job (whose key submitted it)."},
            "webhook": {
                "type": "object",
                "description": "For a job with a callback_url, or once an event of its tenant's subscription "
                "(PUT /webhooks/subscription) was tried: its webhook delivery attempts (the latest 20).",
                "required": ["callback_url", "attempts", "delivered", "delivered_to"],
                "additionalProperties": False,
                "properties": {
                    "callback_url": _NULLABLE_STRING,
                    "delivered": {"type": "boolean", "description": "A delivery was answered 2xx, for every "
                                  "destination tried (callback, subscription)."},
                    "delivered_to": {"type": "array", "items": {"type": "string",
                                                                "enum": ["callback", "subscription"]},
                                     "description": "The destinations a delivery of this job was answered 2xx by."},
                    "attempts": {"type": "array", "items": {
                        "type": "object", "required": ["event", "destination", "status_code", "error", "at"],
                        "additionalProperties": False,
                        "properties": {"event": {"type": "string", "description": "The webhook-id: <job id>:<n> "
                                                 "to the callback_url, <job id>:<n>:subscription to the tenant's "
                                                 "subscription."},
                                       "destination": {"type": "string", "enum": ["callback", "subscription"]},
                                       "status_code": {"type": ["integer", "null"]},
                                       "error": _NULLABLE_STRING, "at": _TIMESTAMP}}},
                },
            },
            "links": {
                "type": "object",
                "required": ["self", "result"],
                "additionalProperties": False,
                "properties": {
                    "self": {"type": "string", "format": "uri-reference"},
                    "result": {"type": "string", "format": "uri-reference"},
                },
            },
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "next_cursor"],
        "additionalProperties": False,
        "properties": {
            "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
            "next_cursor": {
                "type": ["string", "null"],
                "description": "Pass as ?cursor= for the next (older) page; null on the last page.",
            },
        },
    },
    "Task": {
        "type": "object",
        "required": ["name", "queue", "description", "params_schema", "defaults", "workers", "live",
                     "queue_conflict"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "queue": {"type": "string", "description": "The queue submissions of the task go to."},
            "workers": {"type": "integer", "minimum": 0, "description": "Live workers offering the task."},
            "live": {
                "type": "boolean",
                "description": "False when no live worker offers the task: its jobs are accepted and wait "
                "(unrunnable) until one does. Tasks no live worker offered for JOBS_TASK_RETENTION_SECONDS "
                "leave the catalogue.",
            },
            "queue_conflict": {
                "type": "array",
                "items": {"type": "string"},
                "description": "When live workers offer the task on more than one queue: those queues "
                "(a deployment error; submissions go to `queue` only). Empty otherwise.",
            },
            "description": {"type": "string"},
            "params_schema": {"type": "object", "description": "JSON Schema of the task's params."},
            "defaults": {"type": "object", "description": "Applied to params before validation."},
            "timeout": {"type": ["number", "null"], "description": "Default seconds per attempt."},
            "max_attempts": {"type": ["integer", "null"], "description": "Default attempts."},
            "problem": {
                "type": "string",
                "description": "Present when the published definition cannot be used (POST /jobs answers 503).",
            },
            "run_time": {"$ref": "#/components/schemas/RunTime"},
        },
    },
    "TaskList": {
        "type": "object",
        "required": ["tasks"],
        "additionalProperties": False,
        "properties": {"tasks": {"type": "array", "items": {"$ref": "#/components/schemas/Task"}}},
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "instance": {"type": "string", "format": "uri-reference"},
            "errors": {
                "type": "array",
                "description": "Validation failures, one per field.",
                "items": {
                    "type": "object",
                    "required": ["path", "message"],
                    "additionalProperties": False,
                    "properties": {
                        "path": {"type": "string", "description": "JSON pointer, e.g. /params/limit"},
                        "message": {"type": "string"},
                    },
                },
            },
            "job_status": {
                "type": "string",
                "enum": STATUSES,
                "description": "On 409: the job's current status.",
            },
            "scope": {"type": "string", "enum": ["global", "tenant"], "description": "On 429."},
            "limit": {"type": "integer", "description": "On 429: the cap that was reached."},
            "invalid_items": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "description": "On a 422 of POST /jobs/batch: the indexes of the invalid jobs.",
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ok", "ready"]}},
    },
}


_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "Job id (uuid4). Unknown, malformed or another tenant's (unless the caller is an admin): 404.",
}


def _on_job(summary: str, operation_id: str, responses: dict[str, Any], *query: dict[str, Any]) -> dict[str, Any]:
    """An operation on the job of the path (404 for an unknown one), with more ``query`` parameters."""
    return op(
        summary,
        {**responses, "404": problem("No such job.")},
        operationId=operation_id,
        tags=["jobs"],
        parameters=[_JOB_ID, *query],
    )


PATHS: dict[str, Any] = {
    "/jobs": {
        "post": submission(
            "Submit a job",
            "submitJob",
            request=("SubmitRequest", {"task": "sleep", "params": {"seconds": 3}}),
            accepted=(
                "Job",
                "Accepted: the job is recorded and queued (also for an Idempotency-Key repeat, which "
                "returns the original job with Idempotent-Replayed: true).",
            ),
            headers={"Location": {"schema": {"type": "string"}}},
            invalid="Invalid body, unknown task, params failing the task's schema, or an Idempotency-Key "
            "reused with a different body.",
            over_cap="Too many pending jobs (JOBS_MAX_PENDING[_PER_TENANT]).",
            repeat="A repeat with the same key and body returns the same job.",
        ),
        "get": op(
            "List jobs, newest first",
            {"200": json_body("JobList", "A page of jobs."), "400": problem("Bad query parameter."), **FORBIDDEN},
            operationId="listJobs",
            tags=["jobs"],
            parameters=[
                {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
                {"name": "task", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "tenant",
                    "in": "query",
                    "schema": {"type": "string", "pattern": r"^([A-Za-z0-9_.\-]{1,64}|\*)$"},
                    "description": "Admin only: list this tenant's jobs, or every tenant's with '*' (default: "
                    "the caller's tenant; another tenant without the admin role is 403).",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_PAGE_SIZE,
                        "default": DEFAULT_PAGE_SIZE,
                    },
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "next_cursor of the previous page.",
                },
            ],
        ),
    },
    "/jobs/{job_id}": {
        "get": _on_job(
            "Get a job (optionally long-polling until it is terminal)",
            "getJob",
            {"200": json_body("Job", "The job."), "400": problem("Bad wait parameter.")},
            {
                "name": "wait",
                "in": "query",
                "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS},
                "description": "Seconds to wait for the job to become terminal before answering.",
            },
        ),
        "delete": _on_job(
            "Cancel a job",
            "cancelJob",
            {
                "200": json_body("Job", "The job was queued and is now cancelled."),
                "202": json_body(
                    "Job", "The job is running: cancel requested; it becomes cancelled within a heartbeat."
                ),
                "409": problem("The job is already terminal (job_status says which)."),
                **FORBIDDEN,
            },
        ),
    },
    "/jobs/{job_id}/result": {
        "get": _on_job(
            "Get a succeeded job's result",
            "getJobResult",
            {
                "200": {
                    "description": "The result, in its media type (JSON results as application/json).",
                    "content": {
                        "application/json": {"schema": {}},
                        "*/*": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "409": problem("The job has not succeeded (job_status says its status)."),
                "410": problem("The result has expired (JOBS_RESULT_TTL_SECONDS)."),
            },
        ),
    },
    "/jobs/{job_id}/retry": {
        "post": _on_job(
            "Queue a failed or cancelled job again",
            "retryJob",
            {
                "202": json_body("Job", "Queued again.", {"Location": {"schema": {"type": "string"}}}),
                "409": problem("The job is not failed or cancelled (job_status says its status)."),
                **FORBIDDEN,
            },
        ),
    },
    "/tasks": {
        "get": op(
            "List the tasks the workers published",
            {"200": json_body("TaskList", "Every known task, by name.")},
            operationId="listTasks",
            tags=["tasks"],
        ),
    },
    "/tasks/{name}": {
        "get": op(
            "Get one task",
            {"200": json_body("Task", "The task."), "404": problem("No such task.")},
            operationId="getTask",
            tags=["tasks"],
            parameters=[{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        ),
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process answers",
            "operationId": "healthz",
            "tags": ["ops"],
            "responses": {"200": json_body("Health", "Alive.")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: Redis answers",
            "operationId": "readyz",
            "tags": ["ops"],
            "responses": {
                "200": json_body("Health", "Ready."),
                "503": problem("Redis unreachable, or the process is shutting down.", RETRY_AFTER),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (all gunicorn workers, plus queue counts read from Redis)",
            "operationId": "metrics",
            "tags": ["ops"],
            "responses": {
                "200": {
                    "description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "tags": ["ops"],
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/docs": {
        "get": {
            "summary": "Interactive documentation (Swagger UI, served locally)",
            "operationId": "docs",
            "tags": ["ops"],
            "responses": {
                "200": {"description": "HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}
            },
        }
    },
}


def build_spec() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document."""
    from jobs_api import openapi_flows, openapi_prefer, openapi_webhooks  # import this module's helpers

    spec: dict[str, Any] = copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "Jobs API",
                "version": __version__,
                "description": "Submit jobs, follow their progress, fetch their results. Errors are RFC 9457 "
                "problem details (application/problem+json).",
            },
            "tags": [
                {"name": "jobs", "description": "Jobs of the caller's tenant."},
                {"name": "tasks", "description": "Tasks published by the workers."},
                {"name": "queues", "description": "Queues: statistics (any role); pause, resume, cap (admin)."},
                *openapi_flows.TAGS,
                *openapi_webhooks.TAGS,
                {"name": "audit", "description": "The audit log of state-changing actions (own tenant; admin: all)."},
                {"name": "ops", "description": "Health, metrics and documentation (no auth)."},
            ],
            "paths": {**PATHS, **openapi_batch.PATHS, **openapi_queues.PATHS, **openapi_flows.PATHS,
                      **openapi_webhooks.PATHS, **openapi_events.PATHS, **openapi_audit.PATHS},
            "components": {
                "schemas": {**SCHEMAS, **openapi_batch.SCHEMAS, **openapi_queues.SCHEMAS, **openapi_flows.SCHEMAS,
                            **openapi_webhooks.SCHEMAS, **openapi_audit.SCHEMAS},
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "An API key from JOBS_API_KEYS (only when auth is on). Its role: "
                        "viewer reads its tenant's jobs, tasks and queues; operator also submits, cancels and "
                        "retries; admin also reads and acts on every tenant's jobs and pauses, resumes and "
                        "caps queues. With auth off every caller is the admin of tenant 'default'.",
                    }
                },
            },
        }
    )
    openapi_prefer.apply(spec["paths"], spec["components"]["schemas"])
    return spec


@functools.cache
def submit_request_schema() -> dict[str, Any]:
    """The JSON Schema ``POST /jobs`` bodies are validated against (one shared copy: do not mutate).

    Copied once, not per request: the deep copy cost more than the validation on the submit hot path.
    """
    return copy.deepcopy(SCHEMAS["SubmitRequest"])

