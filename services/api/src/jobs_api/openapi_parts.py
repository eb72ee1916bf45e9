"""Building blocks of the OpenAPI document shared by every resource's part of it (see ``openapi.py``)."""

from __future__ import annotations

from typing import Any

#: Longest Idempotency-Key header accepted.
MAX_IDEMPOTENCY_KEY_LENGTH = 200
MAX_TASK_NAME_LENGTH = 200

_TIMESTAMP = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time", "description": "RFC 3339, UTC"}


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
    "429": problem(
        "Too many failed API-key attempts from this client address or with this key prefix "
        "(JOBS_AUTH_FAILURE_LIMIT per JOBS_AUTH_FAILURE_WINDOW_SECONDS); every attempt is refused until "
        "Retry-After, a right key too.",
        RETRY_AFTER,
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


#: Header of an answer that repeats the first one for the same Idempotency-Key.
IDEMPOTENT_REPLAYED = {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}}


def op(summary: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An operation of a protected endpoint (401, 429 and 503 added to ``responses``, bearer ``security`` unless
    ``more`` says otherwise)."""
    merged = {**responses, **AUTH_ERRORS}
    if "429" in responses:  # the operation's own 429 (backpressure) stays, naming the auth limit too
        own = responses["429"]
        merged["429"] = {**own, "description": own["description"] + " Also: " + AUTH_ERRORS["429"]["description"]}
    out = {"summary": summary, "responses": merged, "security": SECURITY}
    out.update(more)
    return out


def json_errors(bad_json: str = "Malformed JSON.") -> dict[str, Any]:
    """The 400, 413 and 415 answers of every endpoint that reads a JSON body (``bad_json``: what 400 covers)."""
    return {
        "400": problem(bad_json),
        "413": problem("Body larger than JOBS_MAX_BODY_BYTES."),
        "415": problem("Content-Type is not application/json."),
    }


def json_request(ref: str, example: Any) -> dict[str, Any]:
    """A required JSON request body: the component schema ``ref``, with an ``example``."""
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}, "example": example}},
    }


def submission(
    summary: str,
    operation_id: str,
    *,
    request: tuple[str, Any],
    accepted: tuple[str, str],
    invalid: str,
    over_cap: str,
    repeat: str,
    headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An idempotent JSON submission of jobs (``POST /jobs``, ``POST /jobs/batch``): the ``request`` body (schema,
    example) is answered 202 ``accepted`` (schema, description; ``headers`` and Idempotent-Replayed), 422 when
    ``invalid``, 429 when ``over_cap``; ``repeat`` says what a repeat with the same Idempotency-Key returns."""
    return op(
        summary,
        {
            "202": json_body(*accepted, {**(headers or {}), **IDEMPOTENT_REPLAYED}),
            **json_errors("Malformed JSON or bad Idempotency-Key header."),
            "422": problem(invalid),
            "429": problem(over_cap, RETRY_AFTER),
            **FORBIDDEN,
        },
        operationId=operation_id,
        tags=["jobs"],
        parameters=[idempotency_key(repeat)],
        requestBody=json_request(*request),
    )


def idempotency_key(description: str) -> dict[str, Any]:
    """The optional ``Idempotency-Key`` request header."""
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH},
        "description": description,
    }
