"""Console webhooks page: the tenant's subscription (read-only, as ``GET /webhooks/subscription``), its
signing secret's state and rotation (admin role, as ``POST /webhooks/secret/rotate``), and the deliveries
still owed (new or retrying: attempts so far, last status code, next attempt), the tenant's own or, for an
admin, every tenant's. Roles are the API's: the same ``@requires`` on the server."""

from __future__ import annotations

from typing import Any, cast

from flask import Response, render_template
from jobs_core.config import Role
from jobs_core.serialization import loads
from jobs_core.subscriptions import WebhookSubscriptions
from jobs_core.webhook_view import PendingDelivery, pending_page
from jobs_core.webhooks import WebhookSecrets

from jobs_api.audit_filters import stream_cursor, tenant_arg
from jobs_api.auth import requires
from jobs_api.console import bp
from jobs_api.console.session import current_principal
from jobs_api.state import state
from jobs_api.validation import query_int
from jobs_api.webhooks import subscription_body

#: Deliveries shown per page.
PAGE_SIZE = 50


def last_attempts(deliveries: list[PendingDelivery]) -> dict[str, dict[str, Any]]:
    """Per event id, its latest attempt as the job's record keeps it (status code, error, time): one
    ``HGET`` per distinct job, in one round trip."""
    jobs = sorted({d.job for d in deliveries if d.job})
    if not jobs:
        return {}
    store = state().store
    pipe = store.redis.pipeline(transaction=False)
    for job_id in jobs:
        pipe.hget(store.keys.job(job_id), "webhook")
    out: dict[str, dict[str, Any]] = {}
    for raw in pipe.execute():
        hook = loads(cast(bytes, raw)) if raw else None
        attempts = hook.get("attempts") if isinstance(hook, dict) else None
        for attempt in attempts if isinstance(attempts, list) else []:
            if isinstance(attempt, dict):
                out[str(attempt.get("event") or "")] = attempt  # oldest first: the last one stays
    return out


def _secret_state(tenant: str) -> dict[str, Any]:
    """Whether the tenant has a secret yet and until when a replaced one still signs (never a secret)."""
    st = state()
    raw = st.store.redis.hget(st.store.keys.webhook_secrets, tenant)
    entry = loads(cast(bytes, raw)) if raw else None
    if not isinstance(entry, dict):
        return {"exists": False, "previous_until_ms": None}
    until = int(entry.get("previous_until") or 0)
    return {"exists": True, "previous_until_ms": until if until > st.store.redis_now_ms() else None}


@bp.get("/webhooks")
@requires(Role.VIEWER)
def webhooks() -> str:
    """The subscription, the secret's state and the deliveries still owed (``?tenant=`` for admins)."""
    principal = current_principal()
    chosen = tenant_arg() if principal.is_admin else None  # others: their own tenant, whatever they ask
    scope = chosen if principal.is_admin else principal.tenant
    before = stream_cursor()
    limit = query_int("limit", PAGE_SIZE, 1, 500)
    deliveries, cursor = pending_page(state().store, tenant=scope, before=before, limit=limit)
    sub = WebhookSubscriptions(state().store).get(principal.tenant)
    filters = {k: v for k, v in (("tenant", chosen), ("limit", str(limit) if limit != PAGE_SIZE else None)) if v}
    return render_template("webhooks.html", subscription=subscription_body(sub) if sub else None,
                           secret=_secret_state(principal.tenant), deliveries=[d.to_dict() for d in deliveries],
                           last=last_attempts(deliveries), next_before=cursor, filters=filters, scope=scope,
                           grace_seconds=state().settings.webhook_secret_grace_seconds)


@bp.post("/webhooks/secret/rotate")
@requires(Role.ADMIN)
def rotate_webhook_secret() -> Response:
    """Make a new signing secret for the admin's tenant and show it once (never stored in the page's URL,
    session or logs; ``no-store``); the replaced one keeps signing for the grace period."""
    principal = current_principal()
    secret = WebhookSecrets(state().store).rotate(principal.tenant)
    body = render_template("webhook_secret.html", secret=secret,
                           grace_seconds=state().settings.webhook_secret_grace_seconds)
    return Response(body, mimetype="text/html", headers={"Cache-Control": "no-store"})
