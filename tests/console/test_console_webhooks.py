"""Console webhooks and schedules pages on the server (real Redis, a real dispatcher pass against a real
loopback receiver): a job's page shows its delivery attempts with status codes and the next retry of what
is still owed; the deliveries list is the tenant's own (an admin's: every tenant's, ``?tenant=`` narrows);
the subscription is read-only and the tenant's own; only an admin rotates the secret (CSRF-checked, audited,
shown once, ``no-store``); the schedules page shows ``skipped_full``."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from jobs_core.config import Settings
from jobs_core.schedules import CatchUp, ScheduleSpec
from jobs_core.store import JobStore
from jobs_core.subscriptions import WebhookSubscriptions
from jobs_core.ticker import tick_once
from jobs_core.webhook_view import pending_page
from jobs_core.webhooks import Dispatcher, WebhookSecrets
from support.procs import wait_for
from support.webhook_receiver import Receiver

from console.conftest import KEY_ALPHA, KEY_BETA, Browser, console_app

ADMIN = "key-admin-hooks-0123456789abcdef"
VIEWER = "key-alpha-viewer-0123456789abcd"


@pytest.fixture
def hstore(settings: Settings) -> JobStore:
    # retries an hour apart: an event that failed once stays owed for the whole test
    return JobStore.from_settings(dataclasses.replace(settings, webhook_allow_http=True, webhook_allow_private=True,
                                                      webhook_timeout_seconds=2.0, webhook_retry_seconds=3600))


@pytest.fixture
def app(settings: Settings, hstore: JobStore) -> Flask:
    return console_app(hstore.settings, hstore,
                       f"alpha:{KEY_ALPHA},beta:{KEY_BETA},alpha:{ADMIN}:admin,alpha:{VIEWER}:viewer")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def browser(app: Flask, key: str) -> Browser:
    b = Browser(app.test_client())
    assert b.login(key).status_code == 303
    return b


def attempt_all(store: JobStore, expected: int) -> None:
    """One dispatcher takes every owed event and tries each once (the answers are the receiver's)."""
    d = Dispatcher(store, "console-test")
    d._ensure_group()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        d.pass_once()
        if int(store.redis.hlen(store.keys.webhook_attempts)) >= expected:  # each failed once
            return
        time.sleep(0.05)
    raise AssertionError("the dispatcher did not try every event")


def _row(html: str, table: str, event: str) -> str:
    section = html[html.index(f'id="{table}"'):]
    section = section[: section.index("</table>")]
    found = re.findall(rf'<tr data-event="{re.escape(event)}">(.*?)</tr>', section, flags=re.S)
    assert found, f"{event} not in #{table}"
    return str(found[-1])  # the latest (attempts are oldest first)


def test_job_page_shows_attempts_status_codes_and_the_next_retry(app: Flask, hstore: JobStore,
                                                                   receiver: Receiver) -> None:
    receiver.answer = 503
    WebhookSubscriptions(hstore).put("alpha", receiver.url.replace("/hook", "/tenant"))
    job, _ = hstore.enqueue("echo", {}, owner="alpha", callback_url=receiver.url)
    hstore.cancel(job.id, owner="alpha")
    alpha = browser(app, KEY_ALPHA)
    page = alpha.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    for event in (f"{job.id}:1", f"{job.id}:1:subscription"):  # written with the transition, not tried yet
        assert "new: at the next dispatcher pass" in _row(page, "webhook-owed", event)
    assert "No attempt yet." in page

    attempt_all(hstore, 2)
    page = alpha.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    due = {e.event: e.next_attempt_ms for e in pending_page(hstore, tenant="alpha")[0]}
    for event, destination in ((f"{job.id}:1", "callback"), (f"{job.id}:1:subscription", "subscription")):
        tried = _row(page, "webhook-attempts", event)
        assert destination in tried and ">503<" in tried
        owed = _row(page, "webhook-owed", event)
        assert '<td class="num">1</td>' in owed  # one failed attempt
        next_ms = due[event]
        assert next_ms is not None and next_ms > time.time() * 1000 + 3000_000  # an hour ahead
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(next_ms / 1000))
        assert f'datetime="{iso}' in owed
    assert "nothing yet" in page

    receiver.answer = 204  # the receiver is back; the retries are made due now
    for entry_id, _ in hstore.redis.zrange(hstore.keys.webhook_due, 0, -1, withscores=True):
        hstore.redis.zadd(hstore.keys.webhook_due, {entry_id: 0})
    d = Dispatcher(hstore, "console-test")
    wait_for(lambda: d.pass_once() == 0 and hstore.redis.xlen(hstore.keys.webhook_outbox) == 0, timeout=20,
             what="both delivered")
    page = alpha.get(f"/ui/jobs/{job.id}").get_data(as_text=True)
    assert 'id="webhook-owed"' not in page and "callback, subscription" in page
    assert ">204<" in _row(page, "webhook-attempts", f"{job.id}:1")
    plain, _ = hstore.enqueue("echo", {}, owner="beta")
    assert 'id="webhook"' not in browser(app, KEY_BETA).get(f"/ui/jobs/{plain.id}").get_data(as_text=True)


def test_deliveries_list_is_the_tenants_own_and_an_admins_is_everyones(app: Flask, hstore: JobStore,
                                                                         receiver: Receiver) -> None:
    receiver.answer = 500
    made = {}
    for tenant in ("alpha", "beta"):
        job, _ = hstore.enqueue("echo", {}, owner=tenant, callback_url=receiver.url)
        hstore.cancel(job.id, owner=tenant)
        made[tenant] = job.id
    attempt_all(hstore, 2)
    alpha, beta, admin = browser(app, KEY_ALPHA), browser(app, KEY_BETA), browser(app, ADMIN)
    for who, mine, theirs in ((alpha, "alpha", "beta"), (beta, "beta", "alpha")):
        for query in ("", f"?tenant={theirs}"):  # a tenant's ?tenant= is ignored: always its own
            page = who.get(f"/ui/webhooks{query}").get_data(as_text=True)
            row = _row(page, "deliveries", f"{made[mine]}:1")
            assert ">500<" in row and '<td class="num">1</td>' in row and "<time datetime=" in row
            assert made[theirs] not in page and 'id="f-tenant"' not in page
    everyone = admin.get("/ui/webhooks").get_data(as_text=True)
    assert made["alpha"] in everyone and made["beta"] in everyone and "every tenant" in everyone
    only_beta = admin.get("/ui/webhooks?tenant=beta").get_data(as_text=True)
    assert made["beta"] in only_beta and made["alpha"] not in only_beta
    first = admin.get("/ui/webhooks?limit=1").get_data(as_text=True)
    assert made["beta"] in first and made["alpha"] not in first  # newest first
    older = re.search(r'href="([^"]+)" rel="next"', first)
    assert older
    second = admin.get(older.group(1).replace("&amp;", "&")).get_data(as_text=True)
    assert made["alpha"] in second and made["beta"] not in second and 'rel="next"' not in second
    bad = admin.client.get("/ui/webhooks?before=99999999999999999999999-0")
    assert bad.status_code == 400 and bad.content_type == "application/problem+json"
    assert admin.client.get("/ui/webhooks?tenant=a%20b").status_code == 400


def test_subscription_is_read_only_and_own_and_only_an_admin_rotates(app: Flask, hstore: JobStore) -> None:
    alpha, beta, viewer, admin = (browser(app, k) for k in (KEY_ALPHA, KEY_BETA, VIEWER, ADMIN))
    assert 'id="no-subscription"' in alpha.get("/ui/webhooks").get_data(as_text=True)
    WebhookSubscriptions(hstore).put("alpha", "https://hooks.example.com/alpha", statuses=["failed"])
    for who in (alpha, viewer, admin):
        page = who.get("/ui/webhooks").get_data(as_text=True)
        assert "https://hooks.example.com/alpha" in page and 'id="subscription-statuses">failed<' in page
    assert "hooks.example.com/alpha" not in beta.get("/ui/webhooks").get_data(as_text=True)
    for who in (alpha, viewer):  # no button, and the server refuses the POST anyway
        assert 'id="rotate-secret"' not in who.get("/ui/webhooks").get_data(as_text=True)
        refused = who.post("/ui/webhooks/secret/rotate")
        assert refused.status_code == 403 and "whsec_" not in refused.get_data(as_text=True)
    assert hstore.redis.hget(hstore.keys.webhook_secrets, "alpha") is None  # nothing rotated
    page = admin.get("/ui/webhooks").get_data(as_text=True)
    assert 'id="rotate-secret"' in page and "No secret yet" in page
    assert admin.post("/ui/webhooks/secret/rotate", csrf=False).status_code == 403  # CSRF
    made = admin.post("/ui/webhooks/secret/rotate")
    assert made.status_code == 200 and made.headers["Cache-Control"] == "no-store"
    secret = re.search(r"(whsec_[A-Za-z0-9+/=]+)", made.get_data(as_text=True))
    assert secret and WebhookSecrets(hstore).signing("alpha", hstore.redis_now_ms()) == [secret.group(1)]
    again = admin.post("/ui/webhooks/secret/rotate")
    newer = re.search(r"(whsec_[A-Za-z0-9+/=]+)", again.get_data(as_text=True))
    assert newer and WebhookSecrets(hstore).signing("alpha", hstore.redis_now_ms()) == [newer.group(1),
                                                                                         secret.group(1)]
    page = admin.get("/ui/webhooks").get_data(as_text=True)
    assert "The replaced secret still signs until" in page and "whsec_" not in page
    assert hstore.redis.hget(hstore.keys.webhook_secrets, "beta") is None  # the admin's own tenant only
    log = [(e["action"], e["role"], e["outcome"], e["via"]) for e in reversed(hstore.audit_log())
           if e["action"] == "webhook.secret.rotate"]
    assert log == [("webhook.secret.rotate", "operator", "denied", "console"),
                   ("webhook.secret.rotate", "viewer", "denied", "console"),
                   ("webhook.secret.rotate", "admin", "denied", "console"),  # no CSRF token: refused too
                   ("webhook.secret.rotate", "admin", "ok", "console"),
                   ("webhook.secret.rotate", "admin", "ok", "console")]


def test_schedules_page_shows_ticks_skipped_at_a_full_pending_cap(settings: Settings) -> None:
    store = JobStore.from_settings(settings.replace(max_pending_per_tenant=1))
    app = console_app(settings.replace(max_pending_per_tenant=1), store,
                      f"alpha:{KEY_ALPHA},beta:{KEY_BETA},ops:{ADMIN}:admin")
    store.enqueue("echo", {}, owner="alpha")  # alpha is at its pending cap
    store.put_schedule("alpha", "every-second", ScheduleSpec(task="echo", cron="* * * * * *", catchup=CatchUp.ALL))
    store.put_schedule("beta", "nightly", ScheduleSpec(task="echo", cron="0 3 * * *"))

    def skipped_at_cap() -> bool:
        tick_once(store, 1000)
        return store.get_schedule("alpha", "every-second").skipped_full >= 1

    wait_for(skipped_at_cap, timeout=10, what="a tick skipped at the cap")
    sched = store.get_schedule("alpha", "every-second")
    page = browser(app, KEY_ALPHA).get("/ui/schedules").get_data(as_text=True)
    row = re.search(r'<tr data-schedule="every-second">(.*?)</tr>', page, flags=re.S)
    assert row and f'<td class="num skipped-full error">{sched.skipped_full}</td>' in row.group(1)
    assert sched.last_skipped_full is not None
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sched.last_skipped_full / 1000)) in row.group(1)
    assert "nightly" not in page and 'id="f-tenant"' not in page
    assert "nightly" not in browser(app, KEY_ALPHA).get("/ui/schedules?tenant=beta").get_data(as_text=True)
    beta = browser(app, KEY_BETA).get("/ui/schedules").get_data(as_text=True)
    assert "nightly" in beta and "every-second" not in beta
    assert '<td class="num skipped-full">0</td>' in beta
    admin = browser(app, ADMIN)
    assert "every-second" in admin.get("/ui/schedules?tenant=alpha").get_data(as_text=True)
    assert admin.client.get("/ui/schedules?tenant=a%20b").status_code == 400
