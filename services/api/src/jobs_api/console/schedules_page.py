"""Console schedules page: the tenant's cron schedules (as ``GET /schedules`` shows them) with what each
tick did: fired, skipped, and ``skipped_full`` (ticks skipped because a pending cap was full), so an
operator sees a schedule that silently stopped producing jobs. Admins may look at another tenant's."""

from __future__ import annotations

from flask import render_template
from jobs_core.config import Role

from jobs_api.audit_filters import tenant_arg
from jobs_api.auth import requires
from jobs_api.console import bp
from jobs_api.console.session import current_principal
from jobs_api.schedules import schedule_body
from jobs_api.state import state


@bp.get("/schedules")
@requires(Role.VIEWER)
def schedules() -> str:
    """Every schedule of the tenant (``?tenant=`` for admins), by name."""
    principal = current_principal()
    owner = (tenant_arg() or principal.tenant) if principal.is_admin else principal.tenant
    rows = [schedule_body(s) for s in state().store.list_schedules(owner)]
    return render_template("schedules.html", schedules=rows, owner=owner)
