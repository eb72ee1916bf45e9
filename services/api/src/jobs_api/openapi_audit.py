"""The ``/audit`` part of the OpenAPI document (merged into it by :func:`jobs_api.openapi.build_spec`)."""

from __future__ import annotations

from typing import Any

from jobs_api.openapi_parts import FORBIDDEN, SECURITY, json_body, op, problem

_ENTRY = {
    "type": "object",
    "required": ["id", "at", "at_ms", "action", "target", "count", "outcome", "tenant", "key", "role", "via", "detail"],
    "properties": {
        "id": {"type": "string", "description": "Stream id (its first part is the time in ms)."},
        "at": {"type": "string", "format": "date-time"},
        "at_ms": {"type": "integer"},
        "action": {"type": "string", "description": "e.g. queue.pause, job.cancel, schedule.put, "
                   "webhook.secret.rotate, bulk.retry, login, logout."},
        "target": {"type": "string", "description": "e.g. queue:<name>, job:<id>, schedule:<name>, bulk:<id>."},
        "count": {"type": "integer", "description": "Objects changed (jobs for a bulk action); 0: nothing."},
        "outcome": {"type": "string", "enum": ["ok", "denied", "failed", "started", "limited"]},
        "tenant": {"type": "string", "description": "The caller's tenant ('' for a failed login)."},
        "key": {"type": "string", "description": "First 12 hex digits of the SHA-256 of the key (never the key)."},
        "role": {"type": "string"},
        "via": {"type": "string", "enum": ["api", "console", "system"]},
        "detail": {"type": "string"},
    },
}
SCHEMAS: dict[str, Any] = {
    "AuditEntry": _ENTRY,
    "AuditPage": {
        "type": "object",
        "required": ["entries", "next"],
        "properties": {
            "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
            "next": {"type": ["string", "null"], "description": "Pass as ?before= for the next (older) page; "
                     "null at the end of the log."},
        },
    },
}


def _q(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema, "description": description}


PATHS: dict[str, Any] = {
    "/audit": {
        "get": op(
            "The audit log: who changed what, when, newest first",
            {
                "200": json_body("AuditPage", "Entries matching the filters, newest first. A page examines at "
                                 "most 5,000 entries: it may come back short with a `next` cursor."),
                "400": problem("A malformed filter or cursor."),
                **FORBIDDEN,
            },
            operationId="listAudit",
            tags=["audit"],
            security=SECURITY,
            description="Every role reads its own tenant's entries; an admin reads every tenant's (and failed "
            "logins, which have no tenant). Entries are kept in a capped Redis stream (about the 100,000 newest).",
            parameters=[
                _q("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}, "Page size."),
                _q("before", {"type": "string", "pattern": "^[0-9]+-[0-9]+$"}, "The `next` of the previous page."),
                _q("tenant", {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$"}, "Admins: this tenant only."),
                _q("action", {"type": "string", "pattern": "^[a-z]+(\\.[a-z]+)*\\.?$"},
                   "An action, or a prefix ending in '.' (queue. = every queue action)."),
                _q("outcome", {"type": "string", "enum": ["ok", "denied", "failed", "started", "limited"]}, ""),
                _q("via", {"type": "string", "enum": ["api", "console"]}, ""),
                _q("target", {"type": "string"}, "Exactly this target, e.g. job:<id>."),
                _q("since", {"type": "string", "format": "date-time"}, "Not before this time (RFC 3339)."),
                _q("until", {"type": "string", "format": "date-time"}, "Not after this time (RFC 3339)."),
            ],
        ),
    },
}
