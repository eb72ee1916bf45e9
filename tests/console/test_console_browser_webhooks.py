"""The console's webhooks and schedules pages in a real browser (Chromium via Playwright) against a real
stack: gunicorn with its webhook dispatchers and schedule ticker, a worker, Redis, a loopback receiver.

A job's page shows its delivery attempts (status codes) and the next retry of what is still owed; the
webhooks page shows the tenant's subscription and owed deliveries, and only an admin gets (and may use)
the rotate button; tenant B never sees A's deliveries or subscription; the schedules page shows ticks
skipped at a full pending cap. Writes docs/img/console-webhooks.png and docs/img/console-schedules.png.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from api.stack import ApiStack, http
from playwright.sync_api import Page, expect
from support.webhook_receiver import Receiver

from console.browser import ROOT, Pages, chromium  # noqa: F401  (fixture)

KEYS = {"alpha": "key-alpha-hooks-browser-0123", "viewer": "key-viewer-hooks-browser-0123",
        "admin": "key-admin-hooks-browser-0123", "beta": "key-beta-hooks-browser-0123",
        "gamma": "key-gamma-hooks-browser-0123"}
ENTRIES = {"alpha": f"alpha:{KEYS['alpha']}", "viewer": f"alpha:{KEYS['viewer']}:viewer",
           "admin": f"alpha:{KEYS['admin']}:admin", "beta": f"beta:{KEYS['beta']}",
           "gamma": f"gamma:{KEYS['gamma']}"}
DOCS_IMG = ROOT / "docs" / "img"
#: gamma fills its pending cap with delayed jobs, so its every-second schedule skips ticks (skipped_full)
PENDING_CAP = 3


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    r.answer = 503  # failing: events stay owed, retried an hour later
    yield r
    r.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ApiStack]:
    env = {"JOBS_WEBHOOK_ALLOW_HTTP": "1", "JOBS_WEBHOOK_ALLOW_PRIVATE": "1", "JOBS_WEBHOOK_RETRY_SECONDS": "3600",
           "JOBS_WEBHOOK_TIMEOUT_SECONDS": "2", "JOBS_MAX_PENDING_PER_TENANT": str(PENDING_CAP)}
    with ApiStack(tmp_path_factory.mktemp("console-hooks"), redis_url, workers=1,
                  api_keys=",".join(ENTRIES.values()), extra_env=env) as s:
        yield s


def api(stack: ApiStack, who: str, method: str, path: str, body: Any = None) -> Any:
    status, _, data = http(method, stack.url + path, body, {"Authorization": f"Bearer {KEYS[who]}"})
    assert status < 300, (status, data[:300])
    return json.loads(data) if data else None


def login(page: Page, who: str) -> None:
    page.goto("/ui/login")
    page.get_by_label("API key").fill(KEYS[who])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".principal")).to_contain_text(ENTRIES[who].split(":")[0])


def attempts(stack: ApiStack, job_id: str) -> list[dict[str, Any]]:
    hook = api(stack, "alpha", "GET", f"/jobs/{job_id}").get("webhook") or {}
    return list(hook.get("attempts") or [])


@pytest.fixture(scope="module")
def failing_job(stack: ApiStack, receiver: Receiver) -> str:
    """Alpha's subscription and a job with a callback, both answered 503 once: two deliveries owed."""
    api(stack, "alpha", "PUT", "/webhooks/subscription", {"url": receiver.url.replace("/hook", "/tenant"),
                                                          "statuses": ["succeeded", "failed"]})
    job_id: str = api(stack, "alpha", "POST", "/jobs", {"task": "echo", "params": {"n": 1},
                                                        "callback_url": receiver.url})["id"]
    deadline = time.monotonic() + 60
    while len(attempts(stack, job_id)) < 2:
        assert time.monotonic() < deadline, "the dispatcher never tried both deliveries"
        time.sleep(0.2)
    return job_id


def test_job_page_shows_deliveries_and_the_next_retry(pages: Pages, stack: ApiStack, failing_job: str) -> None:
    page = pages.new()
    login(page, "alpha")
    page.goto(f"/ui/jobs/{failing_job}")
    tried = page.locator("#webhook-attempts tbody tr")
    expect(tried).to_have_count(2)
    expect(page.locator("#webhook-attempts")).to_contain_text("503")
    expect(page.locator("#webhook-attempts")).to_contain_text("subscription")
    owed = page.locator("#webhook-owed tbody tr")
    expect(owed).to_have_count(2)
    for i in range(2):
        expect(owed.nth(i).locator("td").nth(2)).to_have_text("1")  # one failed attempt
        when = owed.nth(i).locator("time").get_attribute("datetime") or ""
        at = time.mktime(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        assert at > time.time() + 3000, when  # the retry an hour later (JOBS_WEBHOOK_RETRY_SECONDS)
    expect(page.locator("#webhook-delivered")).to_have_text("nothing yet")
    assert pages.errors == []


def test_webhooks_page_roles_and_rotation(pages: Pages, stack: ApiStack, failing_job: str,
                                          receiver: Receiver) -> None:
    page = pages.new()
    login(page, "alpha")
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
    expect(page.locator("#subscription-url")).to_have_text(receiver.url.replace("/hook", "/tenant"))
    expect(page.locator("#subscription-statuses")).to_have_text("failed, succeeded")
    expect(page.locator(f'#deliveries tr[data-event="{failing_job}:1"]')).to_contain_text("503")
    expect(page.locator(f'#deliveries tr[data-event="{failing_job}:1:subscription"]')).to_be_visible()
    expect(page.locator("#rotate-secret")).to_have_count(0)  # an operator: no button
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / "console-webhooks.png"), full_page=True)

    viewer = pages.new()
    login(viewer, "viewer")
    viewer.goto("/ui/webhooks")
    expect(viewer.locator("#deliveries")).to_contain_text(failing_job[:8])
    expect(viewer.locator("#rotate-secret")).to_have_count(0)
    token = viewer.locator('meta[name="csrf-token"]').get_attribute("content") or ""
    refused = viewer.request.post("/ui/webhooks/secret/rotate", form={"csrf_token": token},
                                  headers={"Accept": "text/html"})
    assert refused.status == 403 and "whsec_" not in refused.text()  # the server refuses, not just the page

    beta = pages.new()
    login(beta, "beta")
    beta.goto("/ui/webhooks?tenant=alpha")  # ignored for a tenant key: its own tenant
    expect(beta.locator("#no-subscription")).to_be_visible()
    expect(beta.locator("#deliveries")).to_contain_text("Nothing owed")
    assert failing_job not in beta.content() and "/tenant" not in beta.content()

    admin = pages.new()
    login(admin, "admin")
    admin.goto("/ui/webhooks")
    expect(admin.locator("#deliveries th", has_text="Tenant")).to_be_visible()  # every tenant's, with a column
    admin.locator("#rotate-secret").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("New webhook signing secret")
    secret = admin.locator("#new-secret").input_value()
    assert secret.startswith("whsec_")
    admin.get_by_role("link", name="Back to webhooks").click()
    expect(admin.locator("#signing-secret")).to_contain_text("has a signing secret")
    assert secret not in admin.content()
    audit = api(stack, "admin", "GET", "/audit?action=webhook.secret.rotate")["entries"]
    assert [(e["role"], e["outcome"], e["via"]) for e in audit] == [("admin", "ok", "console"),
                                                                    ("viewer", "denied", "console")]
    assert pages.errors == []
    response = beta.goto(f"/ui/jobs/{failing_job}")  # last: a 404 page is a console error of its own
    assert response is not None and response.status == 404
    assert "503" not in beta.content() and "/tenant" not in beta.content()


def test_schedules_page_shows_ticks_skipped_at_a_full_cap(pages: Pages, stack: ApiStack) -> None:
    for _ in range(PENDING_CAP):  # gamma at its pending cap: delayed jobs count as pending
        api(stack, "gamma", "POST", "/jobs", {"task": "echo", "delay": 3600})
    api(stack, "gamma", "PUT", "/schedules/every-second", {"task": "echo", "cron": "* * * * * *"})
    api(stack, "gamma", "PUT", "/schedules/nightly", {"task": "echo", "cron": "0 3 * * *",
                                                      "timezone": "Europe/Paris"})
    deadline = time.monotonic() + 30
    while api(stack, "gamma", "GET", "/schedules/every-second")["skipped_full"] < 2:
        assert time.monotonic() < deadline, "the ticker never skipped a tick at the cap"
        time.sleep(0.3)
    page = pages.new()
    login(page, "gamma")
    page.get_by_role("link", name="Schedules").click()
    row = page.locator('tr[data-schedule="every-second"]')
    skipped = int(row.locator("td.skipped-full").inner_text())
    assert skipped >= 2
    expect(row.locator("td").nth(10)).not_to_have_text("\u2013")  # the last tick skipped so
    expect(page.locator('tr[data-schedule="nightly"]')).to_contain_text("Europe/Paris")
    expect(page.locator('tr[data-schedule="nightly"] td.skipped-full')).to_have_text("0")
    page.screenshot(path=str(DOCS_IMG / "console-schedules.png"), full_page=True)
    api(stack, "gamma", "DELETE", "/schedules/every-second")  # quiet for the rest of the module
    other = pages.new()
    login(other, "beta")
    other.goto("/ui/schedules?tenant=gamma")
    expect(other.locator("#schedules")).to_contain_text("No schedule.")
    assert pages.errors == []
