"""Building blocks of the OpenAPI document shared by every resource's part of it (see ``openapi.py``)."""

from __future__ import annotations

from typing import Any

#: Longest Idempotency-Key header accepted.
MAX_IDEMPOTENCY_KEY_LENGTH = 200


def problem(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A documented problem+json response."""
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    if headers:
        out["headers"] = headers
    return out


def json_body(ref: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A documented JSON response whose body is the component schema ``ref``."""
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
AUTH_ERRORS = {
    "401": problem(
        "Missing or invalid API key (when JOBS_API_KEYS is set).",
        {"WWW-Authenticate": {"schema": {"type": "string"}}},
    ),
    "503": problem(
        "Redis unreachable, failing over or out of memory, or a write not confirmed on JOBS_ACK_REPLICAS "
        "replicas in time (it may or may not be kept: repeat it, a submission with the same Idempotency-Key); "
        "for submissions also a task whose published definition (params schema) is invalid.",
        RETRY_AFTER,
    ),
}
FORBIDDEN = {
    "403": problem("The API key's role may not do this (viewer < operator < admin; see the README's roles).")
}
SECURITY: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def op(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An operation of a protected endpoint (401 and 503 added to ``responses``)."""
    out = {"summary": summary, "responses": {**responses, **AUTH_ERRORS}}
    out.update(more)
    return out


def idempotency_key(description: str) -> dict[str, Any]:
    """The optional ``Idempotency-Key`` request header."""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
        "description": description,
    }
