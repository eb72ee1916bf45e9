"""The ``/events`` part of the OpenAPI document (merged into it by :func:`jobs_api.openapi.build_spec`)."""

from __future__ import annotations

from typing import Any

from jobs_api.openapi_parts import FORBIDDEN, SECURITY, op, problem

PATHS: dict[str, Any] = {
    "/events": {
        "get": op(
            "Stream job and queue changes (Server-Sent Events), resumable with Last-Event-ID",
            {
                "200": {
                    "description": "text/event-stream. First `retry: 2000`; then one `event: job` per status change "
                    "of a job the caller may see (its tenant's; an admin's: every tenant's, or ?tenant=), "
                    "`id:` = its stream id, or `<stream id>:<k>` for the k-th of several changes one step wrote "
                    "together, "
                    "`data:` = JSON {job, status, tenant, queue}. One `event: queue` per queue "
                    "pause / resume / cap change (queues are cluster-wide: every stream gets them, as GET /queues "
                    "shows every queue), `data:` = JSON {queue, change (pause|resume|cap), paused, cap (null: none), "
                    "role, via (api|console), at (UTC), and for admins only by {tenant, key_id}}; written in "
                    "the same step as the change, resumable the same way. `: keepalive` comments every "
                    "5 s. `event: reset` means events after Last-Event-ID were trimmed: reload state. The stream "
                    "ends after max_seconds; EventSource reconnects with Last-Event-ID by itself. A 503 also means "
                    "this API process already serves its JOBS_API_STREAMS streams: poll, or retry after Retry-After.",
                    "content": {"text/event-stream": {"schema": {  # one SSE event (OpenAPI 3.2 style)
                        "type": "object",
                        "required": ["event", "data"],
                        "properties": {
                            "id": {"type": "string", "pattern": "^[0-9]+-[0-9]+(:[0-9]+)?$"},
                            "event": {"type": "string", "enum": ["job", "queue", "reset"]},
                            "data": {"type": "string", "contentMediaType": "application/json"},
                            "retry": {"type": "integer"},
                        },
                    }}},
                },
                "400": problem("Malformed Last-Event-ID, tenant or max_seconds."),
                **FORBIDDEN,
            },
            operationId="streamEvents",
            tags=["jobs"],
            security=SECURITY,
            parameters=[
                {"name": "Last-Event-ID", "in": "header",
                 "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+(:[0-9]+)?$"},
                 "description": "Resume after this event (EventSource sends it when it reconnects)."},
                {
                    "name": "last_event_id",
                    "in": "query",
                    "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+(:[0-9]+)?$"},
                    "description": "The same as the header, for clients that cannot set headers.",
                },
                {
                    "name": "tenant",
                    "in": "query",
                    "schema": {"type": "string"},
                    "description": "Admins: only this tenant's jobs (others always get their own).",
                },
                {
                    "name": "max_seconds",
                    "in": "query",
                    "schema": {"type": "number", "minimum": 0, "maximum": 3600, "default": 300},
                    "description": "End the stream after this long.",
                },
            ],
        ),
    },
}
