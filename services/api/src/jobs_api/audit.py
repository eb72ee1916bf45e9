"""The audit log on the API side: ``GET /audit``, and the recording of every state-changing request.

What is recorded (``jobs_core.audit`` describes an entry): queue pause / resume / cap (by
``queue_control.lua``, in the same step as the change), and, right after the request succeeded (one
``XADD``; a Redis error there is logged, never turned into an error for an action that already happened):
job cancel (``DELETE /jobs/<id>``) and retry, workflow cancel, schedule put / delete / pause / resume,
webhook secret rotation (API or console) and subscription put / delete, the console's cancel / retry buttons, console
login (success and failure, with the client address) and logout; console bulk actions record their start
and end themselves (``console/bulk.py``). A request refused for its role (403) is recorded with outcome ``denied``.
Submissions (``POST /jobs``, batches, workflows, the console's run form) are not: the job record already
says who created it and when, and an extra write per job would tax the hot path.

Who may read it: every role reads its own tenant's entries; an admin reads every tenant's (``?tenant=``
narrows it), including entries without a tenant (failed logins). The key itself is never stored: ``key``
is the first 12 hex digits of its SHA-256.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, Response, g, request
from jobs_core.audit import Actor
from jobs_core.config import Role

from jobs_api.audit_filters import read_audit
from jobs_api.auth import current_principal, protect, requires
from jobs_api.state import json_response, state

log = logging.getLogger("jobs_api.audit")
bp = Blueprint("audit", __name__)
protect(bp)

#: endpoint -> (action, view argument naming the target, target kind). Queue controls are not here: their
#: script writes the entry itself. Bulk actions are recorded by the bulk module.
RECORDED: dict[str, tuple[str, str | None, str]] = {
    "jobs.cancel": ("job.cancel", "job_id", "job"),
    "jobs.retry": ("job.retry", "job_id", "job"),
    "workflows.cancel_workflow": ("workflow.cancel", "workflow_id", "workflow"),
    "schedules.put_schedule": ("schedule.put", "name", "schedule"),
    "schedules.delete_schedule": ("schedule.delete", "name", "schedule"),
    "schedules.pause_schedule": ("schedule.pause", "name", "schedule"),
    "schedules.resume_schedule": ("schedule.resume", "name", "schedule"),
    "webhooks.rotate_secret": ("webhook.secret.rotate", None, "webhooks"),
    "webhooks.put_subscription": ("webhook.subscription.put", None, "webhooks"),
    "webhooks.delete_subscription": ("webhook.subscription.delete", None, "webhooks"),
    "ui.job_action": ("job.{action}", "job_id", "job"),
    "ui.rotate_webhook_secret": ("webhook.secret.rotate", None, "webhooks"),
    "ui.login": ("login", None, "console"),
    "ui.logout": ("logout", None, "console"),
}
#: Refused for the role: recorded for these too (a viewer trying to pause a queue is worth knowing).
DENIABLE = {*RECORDED, "queues.pause", "queues.resume", "queues.set_cap", "ui.queue_action", "ui.bulk_run"}


def current_actor() -> Actor:
    """The caller of this request as an audit actor: tenant, key id (never the key), role, api/console."""
    from jobs_api.console.session import key_id

    principal = g.get("principal") or g.get("logged_out")
    via = "console" if request.blueprint == "ui" else "api"
    if principal is None:
        presented = request.form.get("api_key", "") if request.endpoint == "ui.login" else ""
        return Actor("", key_id(presented) if presented else "", "", via)
    found = getattr(principal, "key_id", None)  # the console's principal knows its key's id
    if found is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        found = key_id(token.strip()) if scheme.lower() == "bearer" and token.strip() else "none"
    return Actor(principal.tenant, found, str(principal.role), via)


def _record(resp: Response) -> Response:
    endpoint = request.endpoint or ""
    status = resp.status_code
    outcome: str | None = None
    if endpoint == "ui.login" and request.method == "POST":
        outcome = {303: "ok", 401: "failed", 429: "limited"}.get(status)
    elif status < 400 and endpoint in RECORDED and request.method != "GET":
        outcome = "ok"
    elif status == 403 and endpoint in DENIABLE and g.get("principal") is not None:
        outcome = "denied"
    if outcome is None:
        return resp
    args = request.view_args or {}
    action, arg, kind = RECORDED.get(endpoint, (endpoint.replace("ui.", "console.").replace("_", "."), None, ""))
    action = action.format(action=args.get("action", ""))
    if arg is not None and arg in args:
        target = f"{kind}:{args[arg]}"
    elif kind:
        target = kind
    else:
        target = ":".join(str(v) for v in args.values()) or "-"
    detail = f"ip={request.remote_addr}" if endpoint == "ui.login" else ""
    try:
        state().store.record(current_actor(), action, target[:240], count=1 if outcome == "ok" else 0,
                             outcome=outcome, detail=detail)
    except Exception:  # the action itself happened: never answer 500 for it; the log line says what is missing
        log.warning("audit entry not written", extra={"action": action, "target": target, "outcome": outcome},
                    exc_info=True)
    return resp


def init_app(app: Flask) -> None:
    """Register ``GET /audit`` and the recording of state-changing requests."""
    app.register_blueprint(bp)
    app.after_request(_record)


@bp.get("/audit")
@requires(Role.VIEWER)
def list_audit() -> Response:
    """Audit entries newest first, filtered, in cursor pages (a tenant's own; an admin's: every tenant's)."""
    principal = current_principal()
    page = read_audit(principal.is_admin, principal.tenant)
    return json_response({"entries": page.entries, "next": page.next})
