"""``/webhooks`` resource: the tenant's webhook signing secret (deliveries: ``jobs_core.webhooks``)."""

from __future__ import annotations

from flask import Blueprint, Response
from jobs_core.config import Role
from jobs_core.webhooks import WebhookSecrets

from jobs_api.auth import current_tenant, protect, requires
from jobs_api.state import json_response, state

bp = Blueprint("webhooks", __name__)
protect(bp)


@bp.post("/webhooks/secret/rotate")
@requires(Role.ADMIN)
def rotate_secret() -> Response:
    """Make and return a new signing secret for the caller's tenant; the old one signs too for a grace period."""
    st = state()
    secret = WebhookSecrets(st.store).rotate(current_tenant())
    return json_response({"secret": secret,
                          "previous_valid_for_seconds": st.settings.webhook_secret_grace_seconds},
                         headers={"Cache-Control": "no-store"})
