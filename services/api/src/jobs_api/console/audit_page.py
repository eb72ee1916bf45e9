"""Console audit page: the audit log (``GET /audit``'s entries and filters), newest first, in cursor pages."""

from __future__ import annotations

from flask import render_template, request
from jobs_core.config import Role

from jobs_api.audit import OUTCOMES, query_from_request, visible_tenant
from jobs_api.auth import requires
from jobs_api.console import bp
from jobs_api.console.session import current_principal
from jobs_api.state import state

_FILTERS = ("tenant", "action", "outcome", "via", "target", "since", "until")


@bp.get("/audit")
@requires(Role.VIEWER)
def audit() -> str:
    """The audit log with filters (admins see every tenant's, others their tenant's)."""
    principal = current_principal()
    query = query_from_request(visible_tenant(principal.is_admin, principal.tenant))
    entries, cursor = state().store.audit_entries(query)
    current = {k: request.args[k] for k in _FILTERS if request.args.get(k)}
    return render_template("audit.html", entries=entries, next_before=cursor, filters=current, outcomes=OUTCOMES)
