"""Console audit page: the audit log (``GET /audit``'s entries and filters, read by the same parser:
``jobs_api.audit_filters``), newest first, in cursor pages."""

from __future__ import annotations

from flask import render_template
from jobs_core.config import Role

from jobs_api.audit_filters import OUTCOMES, VIAS, read_audit
from jobs_api.auth import requires
from jobs_api.console import bp
from jobs_api.console.session import current_principal


@bp.get("/audit")
@requires(Role.VIEWER)
def audit() -> str:
    """The audit log with filters (admins see every tenant's, others their tenant's)."""
    principal = current_principal()
    page = read_audit(principal.is_admin, principal.tenant)
    return render_template("audit.html", entries=page.entries, next_before=page.next, filters=page.filters,
                           outcomes=OUTCOMES, vias=VIAS)
