"""``/webhooks`` resource: the tenant's webhook signing secret and its subscription (deliveries:
``jobs_core.webhooks``; subscriptions: ``jobs_core.subscriptions``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from jobs_core import webhooks
from jobs_core.config import Role
from jobs_core.errors import UnsafeWebhookUrl
from jobs_core.schedules import iso
from jobs_core.subscriptions import Subscription, WebhookSubscriptions
from jobs_core.webhooks import WebhookSecrets

from jobs_api import openapi_webhooks
from jobs_api.auth import current_tenant, protect, requires
from jobs_api.problems import Problem, validation_problem
from jobs_api.state import json_response, state
from jobs_api.validation import read_json_body, schema_errors

bp = Blueprint("webhooks", __name__)
protect(bp)

SUBSCRIPTION_PATH = "/webhooks/subscription"


def safe_url(url: str, path: str) -> str:
    """``url`` once judged a safe webhook destination (scheme by config, shape, no literal non-public
    address; names are checked at each delivery), else a 422 naming ``path``. The one check of every
    destination: a job's or workflow node's ``callback_url`` and the tenant subscription's ``url``."""
    s = state().settings
    try:
        webhooks.check_literal(webhooks.check_url(url, allow_http=s.webhook_allow_http),
                               allow_private=s.webhook_allow_private)
    except UnsafeWebhookUrl as e:
        field = path.rsplit("/", 1)[-1]
        raise validation_problem([{"path": path, "message": str(e).replace("callback_url", field, 1)}]) from None
    return str(url)


@bp.post("/webhooks/secret/rotate")
@requires(Role.ADMIN)
def rotate_secret() -> Response:
    """Make and return a new signing secret for the caller's tenant; the old one signs too for a grace period."""
    st = state()
    secret = WebhookSecrets(st.store).rotate(current_tenant())
    return json_response({"secret": secret,
                          "previous_valid_for_seconds": st.settings.webhook_secret_grace_seconds},
                         headers={"Cache-Control": "no-store"})


def subscription_body(sub: Subscription) -> dict[str, Any]:
    """The public representation of a subscription."""
    return {"url": sub.url, "statuses": list(sub.statuses) if sub.statuses else None,
            "tasks": list(sub.tasks) if sub.tasks else None, "created_at": iso(sub.created_at),
            "updated_at": iso(sub.updated_at), "links": {"self": SUBSCRIPTION_PATH}}


def _no_subscription() -> Problem:
    return Problem(404, "Not Found", "this tenant has no webhook subscription (PUT /webhooks/subscription)",
                   slug="webhook-subscription-not-found")


@bp.put(SUBSCRIPTION_PATH)
@requires(Role.OPERATOR)
def put_subscription() -> Response:
    """Create (201) or replace (200) the tenant's subscription; it applies to transitions after this."""
    body = read_json_body()
    errors = schema_errors(openapi_webhooks.SCHEMAS["WebhookSubscriptionRequest"], body)
    if errors:
        raise validation_problem(errors)
    url = safe_url(body["url"], "/url")
    sub, created = WebhookSubscriptions(state().store).put(current_tenant(), url, statuses=body.get("statuses"),
                                                           tasks=body.get("tasks"))
    return json_response(subscription_body(sub), 201 if created else 200, {"Location": SUBSCRIPTION_PATH})


@bp.get(SUBSCRIPTION_PATH)
@requires(Role.VIEWER)
def get_subscription() -> Response:
    """The tenant's subscription, or 404."""
    sub = WebhookSubscriptions(state().store).get(current_tenant())
    if sub is None:
        raise _no_subscription()
    return json_response(subscription_body(sub))


@bp.delete(SUBSCRIPTION_PATH)
@requires(Role.OPERATOR)
def delete_subscription() -> Response:
    """Remove the tenant's subscription (204; 404 if none); events already recorded are still delivered."""
    if not WebhookSubscriptions(state().store).delete(current_tenant()):
        raise _no_subscription()
    return Response(status=204)
