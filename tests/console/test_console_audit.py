"""The console's side of the audit log (issue 13): its logins, logouts and actions are recorded with
``via: console``, and the audit page shows them with filters, tenant-scoped."""

from __future__ import annotations

import hashlib

import pytest
from flask import Flask
from jobs_core.config import Settings
from jobs_core.store import JobStore

from console.conftest import KEY_ALPHA, KEY_BETA, Browser, console_app

ADMIN = "key-admin-audit-0123456789abcdef"


@pytest.fixture
def app(settings: Settings, store: JobStore) -> Flask:
    return console_app(settings, store, f"alpha:{KEY_ALPHA},beta:{KEY_BETA},ops:{ADMIN}:admin")


def test_logins_logouts_and_console_actions_are_recorded(app: Flask, store: JobStore) -> None:
    wrong = Browser(app.test_client())
    wrong.get("/ui/login")
    assert wrong.post("/ui/login", {"api_key": "not-a-key-at-all"}).status_code == 401
    alpha = Browser(app.test_client())
    alpha.login(KEY_ALPHA)
    job = store.enqueue("echo", {}, owner="alpha")[0].id
    assert alpha.post(f"/ui/jobs/{job}/cancel").status_code == 303
    assert alpha.post("/ui/logout").status_code == 303
    entries = store.audit_log()
    got = [(e["action"], e["target"], e["tenant"], e["outcome"], e["via"]) for e in reversed(entries)]
    assert got == [("login", "console", "", "failed", "console"), ("login", "console", "alpha", "ok", "console"),
                   ("job.cancel", f"job:{job}", "alpha", "ok", "console"),
                   ("logout", "console", "alpha", "ok", "console")]
    failed = entries[-1]
    assert failed["key"] == hashlib.sha256(b"not-a-key-at-all").hexdigest()[:12] and failed["detail"].startswith("ip=")
    assert entries[0]["key"] == hashlib.sha256(KEY_ALPHA.encode()).hexdigest()[:12]
    assert "not-a-key-at-all" not in str(entries) and KEY_ALPHA not in str(entries)


def test_the_audit_page_is_tenant_scoped_and_filters(app: Flask, store: JobStore) -> None:
    for key in (KEY_ALPHA, KEY_BETA):
        b = Browser(app.test_client())
        b.login(key)
    alpha = Browser(app.test_client())
    alpha.login(KEY_ALPHA)
    page = alpha.get("/ui/audit").get_data(as_text=True)
    assert page.count('data-action="login"') == 2 and "beta/" not in page and 'id="f-tenant"' not in page
    admin = Browser(app.test_client())
    admin.login(ADMIN)
    page = admin.get("/ui/audit").get_data(as_text=True)
    assert page.count('data-action="login"') == 4 and "beta/operator" in page and 'id="f-tenant"' in page
    only_beta = admin.get("/ui/audit?tenant=beta").get_data(as_text=True)
    assert only_beta.count('data-action="login"') == 1 and "alpha/" not in only_beta
    assert admin.get("/ui/audit?action=job.").get_data(as_text=True).count("<tr data-action") == 0
    paged = admin.get("/ui/audit?limit=1").get_data(as_text=True)
    assert paged.count("<tr data-action") == 1 and 'rel="next"' in paged
    bad = admin.client.get("/ui/audit?outcome=maybe")
    assert bad.status_code == 400 and bad.content_type == "application/problem+json"
