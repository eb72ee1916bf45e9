"""Console bulk actions (retry / cancel on selected rows or on everything matching a filter) and audit log.

Two steps: the preview records a plan (the exact ids, at most ``JOBS_UI_BULK_MAX``) and states its count and
filter; confirming starts it. It runs in chunks, at most ``JOBS_UI_BULK_RATE`` jobs a second, with its
whole state in Redis (``jobs_core.bulk_store``): when the API process running it dies, another process's
runner takes it over from its last chunk, so the progress page keeps moving and every planned job is
changed exactly once. The start and the end are written to the audit log (who, what, when, how many).
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, redirect, render_template, request, url_for
from jobs_core.bulk_store import BulkRunner, holder_token
from jobs_core.config import Role
from jobs_core.model import TERMINAL_STATUSES, JobStatus, is_job_id
from jobs_core.serialization import loads
from werkzeug.wrappers import Response as BaseResponse

from jobs_api.auth import requires
from jobs_api.console import BULK_RUNNER, bp
from jobs_api.console.jobs_pages import filter_query, parse_filter
from jobs_api.console.session import Principal, config, current_principal
from jobs_api.problems import Problem, validation_problem
from jobs_api.state import json_response, state

#: Which statuses each action applies to (the plan keeps only those jobs).
APPLIES_TO: dict[str, frozenset[JobStatus]] = {
    "retry": frozenset({JobStatus.FAILED, JobStatus.CANCELLED}),
    "cancel": frozenset(set(JobStatus) - TERMINAL_STATUSES),
}


def _plan_visible(plan: dict[str, str] | None, principal: Principal) -> dict[str, str]:
    if plan is None or not (principal.is_admin or plan.get("who") == principal.describe()):
        raise Problem(404, "Not Found", "no such bulk action", slug="bulk-not-found")
    return plan


@bp.post("/bulk/preview")
@requires(Role.OPERATOR)
def bulk_preview() -> str:
    """Work out which jobs a bulk action would change and say how many; nothing changes yet."""
    principal = current_principal()
    action, _, scope = request.form.get("act", "").partition("-")
    if action not in APPLIES_TO or scope not in ("selected", "filter"):
        raise validation_problem([{"path": "/form/act", "message": "must be retry-selected, cancel-selected, "
                                   "retry-filter or cancel-filter"}], status=400)
    cfg = config()
    store = state().store
    owner = principal.owner_filter(None)
    if scope == "selected":
        ids = request.form.getlist("ids")
        if not ids:
            raise validation_problem([{"path": "/form/ids", "message": "select at least one job"}], status=400)
        if len(ids) > cfg.bulk_max or not all(is_job_id(i) for i in ids):
            raise validation_problem([{"path": "/form/ids", "message": f"1-{cfg.bulk_max} job ids"}], status=400)
        described = {"ids": f"{len(ids)} selected"}
        matched, complete = list(dict.fromkeys(ids)), True
    else:
        flt = parse_filter()
        described = flt.describe()
        matched, complete = store.matching_ids(flt, cfg.bulk_max, cfg.bulk_scan)
    jobs = [j for j in store.get_many(matched) if owner is None or j.owner == owner]
    planned = [j.id for j in jobs if j.status in APPLIES_TO[action]]
    op_id = store.create_bulk(action, principal.describe(), described, planned, complete, owner=owner,
                              tenant=principal.tenant)
    return render_template("bulk_preview.html", op_id=op_id, action=action, scope=scope, filter=described,
                           matched=len(jobs), planned=len(planned), complete=complete, cap=cfg.bulk_max,
                           query=filter_query())


def runner() -> BulkRunner:
    """This process's bulk runner (created with the app; its takeover loop is started by
    :func:`jobs_api.background.start` in every gunicorn worker)."""
    found: BulkRunner = current_app.extensions[BULK_RUNNER]
    return found


@bp.post("/bulk/<op_id>/run")
@requires(Role.OPERATOR)
def bulk_run(op_id: str) -> BaseResponse:
    """Start a previewed bulk action in the background; the status page shows its progress."""
    principal = current_principal()
    store = state().store
    plan = _plan_visible(store.bulk(op_id), principal)
    holder = holder_token()
    started = {"who": principal.describe(), "tenant": principal.tenant, "event": "started", "action": plan["action"],
               "bulk": op_id, "filter": loads(plan["filter"]), "planned": int(plan["planned"])}
    if store.start_bulk(op_id, holder, started):  # False: a double submit, already running or done
        runner().run_now(op_id, holder)
    return redirect(url_for("ui.bulk_status", op_id=op_id), 303)


def _plan_body(plan: dict[str, str]) -> dict[str, Any]:
    return {
        "id": plan["id"], "action": plan["action"], "state": plan["state"], "who": plan["who"],
        "filter": loads(plan["filter"]), "planned": int(plan["planned"]), "done": int(plan["done"]),
        "changed": int(plan["changed"]), "skipped": int(plan.get("skipped") or 0),
        "complete": plan["complete"] == "1", "resumed": int(plan.get("claims") or 0),
        "created_ms": int(plan["created_ms"]), "updated_ms": int(plan.get("updated_ms") or 0) or None,
    }


@bp.get("/bulk/<op_id>")
@requires(Role.VIEWER)
def bulk_status(op_id: str) -> str:
    """A bulk action's progress (the page refreshes it while it runs)."""
    plan = _plan_visible(state().store.bulk(op_id), current_principal())
    return render_template("bulk_status.html", op=_plan_body(plan))


@bp.get("/bulk/<op_id>/status")
@requires(Role.VIEWER)
def bulk_status_json(op_id: str) -> Response:
    """A bulk action's progress as JSON."""
    plan = _plan_visible(state().store.bulk(op_id), current_principal())
    return json_response(_plan_body(plan))
