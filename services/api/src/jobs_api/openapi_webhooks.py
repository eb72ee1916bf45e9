"""OpenAPI parts of the webhook endpoints (``jobs_api.webhooks``)."""

from __future__ import annotations

from typing import Any

from jobs_api.openapi_parts import FORBIDDEN, SECURITY, json_body, op

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
}

PATHS: dict[str, Any] = {
    "/webhooks/secret/rotate": {
        "post": op("Make a new webhook signing secret for the caller's tenant (admin)",
                   {"200": json_body("WebhookSecret", "The new secret."), **FORBIDDEN},
                   operationId="rotateWebhookSecret", tags=["webhooks"], security=SECURITY),
    },
}

TAGS = [{"name": "webhooks", "description": "Signed callbacks when jobs end (Standard Webhooks)."}]
