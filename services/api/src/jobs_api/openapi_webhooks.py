"""OpenAPI parts of the webhook endpoints (``jobs_api.webhooks``). As with ``SubmitRequest``, the request
schema here is the one the view validates bodies against."""

from __future__ import annotations

from typing import Any

from jobs_core.subscriptions import MAX_TASKS, TERMINAL

from jobs_api.openapi_parts import _TIMESTAMP, FORBIDDEN, MAX_TASK_NAME_LENGTH, SECURITY, json_body, op, problem

_FILTERS: dict[str, Any] = {
    "statuses": {"type": ["array", "null"], "minItems": 1, "uniqueItems": True,
                 "items": {"type": "string", "enum": list(TERMINAL)},
                 "description": "Only jobs ending with one of these statuses. Default (null): every terminal "
                 "status."},
    "tasks": {"type": ["array", "null"], "minItems": 1, "maxItems": MAX_TASKS, "uniqueItems": True,
              "items": {"type": "string", "minLength": 1, "maxLength": MAX_TASK_NAME_LENGTH},
              "description": "Only jobs of these tasks. Default (null): every task."},
}

SCHEMAS: dict[str, Any] = {
    "WebhookSecret": {
        "type": "object",
        "required": ["secret", "previous_valid_for_seconds"],
        "additionalProperties": False,
        "properties": {
            "secret": {"type": "string", "pattern": "^whsec_", "description": "The tenant's new signing secret "
                       "(Standard Webhooks form); shown only in this answer."},
            "previous_valid_for_seconds": {"type": "number", "description": "The replaced secret still signs "
                                           "(a second signature) for this long: JOBS_WEBHOOK_SECRET_GRACE_SECONDS."},
        },
    },
    "WebhookSubscriptionRequest": {
        "type": "object",
        "description": "The tenant's webhook subscription: every terminal transition of its jobs that the "
        "filters take is POSTed to url (signed, as a callback_url is).",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": 2048,
                    "description": "https:// only unless JOBS_WEBHOOK_ALLOW_HTTP; non-public addresses refused "
                    "unless JOBS_WEBHOOK_ALLOW_PRIVATE (the rules of callback_url)."},
            **_FILTERS,
        },
    },
    "WebhookSubscription": {
        "type": "object",
        "required": ["url", "statuses", "tasks", "created_at", "updated_at", "links"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string"},
            **_FILTERS,
            "created_at": _TIMESTAMP,
            "updated_at": _TIMESTAMP,
            "links": {"type": "object", "required": ["self"], "additionalProperties": False,
                      "properties": {"self": {"type": "string"}}},
        },
    },
}

_404 = problem("The tenant has no webhook subscription.")


def _op(summary: str, op_id: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return op(summary, {**responses, **FORBIDDEN}, operationId=op_id, tags=["webhooks"], security=SECURITY, **more)


PATHS: dict[str, Any] = {
    "/webhooks/secret/rotate": {
        "post": _op("Make a new webhook signing secret for the caller's tenant (admin)", "rotateWebhookSecret",
                    {"200": json_body("WebhookSecret", "The new secret.")}),
    },
    "/webhooks/subscription": {
        "put": _op(
            "Create or replace the tenant's webhook subscription (operator); it applies to transitions after it",
            "putWebhookSubscription",
            {
                "200": json_body("WebhookSubscription", "Replaced."),
                "201": json_body("WebhookSubscription", "Created.", {"Location": {"schema": {"type": "string"}}}),
                "400": problem("Malformed JSON."),
                "413": problem("Body larger than JOBS_MAX_BODY_BYTES."),
                "415": problem("Content-Type is not application/json."),
                "422": problem("Invalid body, or a url refused (scheme, shape, non-public address)."),
            },
            requestBody={"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/WebhookSubscriptionRequest"},
                "example": {"url": "https://hooks.example.com/jobs", "statuses": ["failed", "cancelled"]}}}},
        ),
        "get": _op("The tenant's webhook subscription", "getWebhookSubscription",
                   {"200": json_body("WebhookSubscription", "The subscription."), "404": _404}),
        "delete": _op("Remove the tenant's webhook subscription (operator); events already recorded are still "
                      "delivered", "deleteWebhookSubscription", {"204": {"description": "Removed."}, "404": _404}),
    },
}

TAGS = [{"name": "webhooks", "description": "Signed callbacks when jobs end (Standard Webhooks): per job "
         "(callback_url) or per tenant (subscription)."}]
