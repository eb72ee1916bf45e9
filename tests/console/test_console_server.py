"""Server-side tests of the console (/ui): login, sessions, CSRF, tenants, pages, bad input, bulk actions."""

from __future__ import annotations

import re
from typing import Any

import orjson
from api.conftest import Runner
from flask import Flask
from jobs_api.console import CSP
from jobs_core.config import Settings
from jobs_core.model import JobStatus
from jobs_core.store import JobStore

from console.conftest import HTML, KEY_ALPHA, KEY_BETA, Browser, console_app

PAGES = ["/ui/", "/ui/jobs", "/ui/workers", "/ui/tasks", "/ui/audit", "/ui/schedules", "/ui/webhooks"]


def _problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)[:500]
    assert resp.content_type == "application/problem+json", resp.content_type
    body: dict[str, Any] = resp.get_json()
    assert body["status"] == status
    return body


def _submit(store: JobStore, owner: str, task: str = "sleep", **params: Any) -> str:
    job, _ = store.enqueue(task, params or {"seconds": 1}, owner=owner)
    return job.id


# ---------------------------------------------------------------------------------------------- open console
def test_with_auth_off_every_page_is_open_and_strict(settings: Settings, store: JobStore) -> None:
    client = console_app(settings, store, None).test_client()
    for path in PAGES:
        resp = client.get(path, headers=HTML)
        assert resp.status_code == 200, path
        assert resp.headers["Content-Security-Policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
        html = resp.get_data(as_text=True)
        assert "<script>" not in html and " style=" not in html, path  # nothing inline for the CSP to allow
        assert "http://" not in html and "https://" not in html, path  # no CDN
        for ref in re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', html):
            assert client.get(ref).status_code == 200, ref
    assert "Log out" not in client.get("/ui/", headers=HTML).get_data(as_text=True)


# ---------------------------------------------------------------------------------------------- login
def test_pages_need_a_session_when_auth_is_on(app: Flask) -> None:
    client = app.test_client()
    resp = client.get("/ui/jobs?status=failed", headers=HTML)
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/ui/login?next=/ui/jobs")
    _problem(client.get("/ui/jobs"), 401)  # a non-browser client gets problem+json
    _problem(client.get("/ui/jobs", headers={"Authorization": f"Bearer {KEY_ALPHA}"}), 401)  # sessions only


def test_login_sets_a_hardened_cookie_without_the_key(app: Flask) -> None:
    b = Browser(app.test_client())
    b.get("/ui/login")
    bad = b.post("/ui/login", {"api_key": "nope"})
    assert bad.status_code == 401 and "not valid" in bad.get_data(as_text=True)
    resp = b.post("/ui/login", {"api_key": KEY_ALPHA, "next": "/ui/workers"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/ui/workers"
    cookie = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("jobs_ui="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Max-Age=28800" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the TLS test
    assert KEY_ALPHA not in cookie
    page = b.get("/ui/workers")
    assert page.status_code == 200 and "alpha · operator" in page.get_data(as_text=True)


def test_cookie_is_secure_over_tls(app: Flask) -> None:
    client = app.test_client()
    resp = client.get("/ui/login", headers=HTML, base_url="https://console.example")
    cookie = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("jobs_ui="))
    assert "Secure" in cookie


def test_login_never_redirects_off_the_console(app: Flask) -> None:
    b = Browser(app.test_client())
    b.get("/ui/login")
    for target in ("https://evil.example/", "//evil.example", "/ui//evil.example", "/jobs"):
        b.get("/ui/login")  # each login rotates the CSRF token
        resp = b.post("/ui/login", {"api_key": KEY_ALPHA, "next": target})
        assert resp.headers["Location"] == "/ui/", target


def test_login_needs_the_csrf_token(app: Flask) -> None:
    b = Browser(app.test_client())
    b.get("/ui/login")
    _problem(b.client.post("/ui/login", data={"api_key": KEY_ALPHA}), 403)
    assert b.post("/ui/login", {"api_key": KEY_ALPHA, "csrf_token": "forged"}).status_code == 403


def test_logout_ends_the_session(alpha: Browser) -> None:
    assert alpha.post("/ui/logout").status_code == 303
    assert alpha.get("/ui/jobs").status_code == 303


def test_a_tampered_or_foreign_cookie_is_no_session(app: Flask, settings: Settings, store: JobStore) -> None:
    b = Browser(app.test_client())
    b.login(KEY_ALPHA)
    value = b.client.get_cookie("jobs_ui")
    assert value is not None
    b.client.set_cookie("jobs_ui", value.value[:-2] + "xx")
    assert b.get("/ui/jobs").status_code == 303
    # a key removed from JOBS_API_KEYS ends its sessions at once (same secret, other keys)
    other = console_app(settings, store, f"beta:{KEY_BETA}").test_client()
    other.set_cookie("jobs_ui", value.value)
    assert other.get("/ui/jobs", headers=HTML).status_code == 303


def test_sessions_expire(settings: Settings, store: JobStore) -> None:
    app = console_app(settings, store, f"alpha:{KEY_ALPHA}", session_seconds=60)
    b = Browser(app.test_client())
    b.login(KEY_ALPHA)
    cookie = b.client.get_cookie("jobs_ui")
    assert cookie is not None and cookie.max_age == 60
    import itsdangerous

    signer = itsdangerous.URLSafeTimedSerializer(store.console_secret().decode(), salt="jobs-ui-session")
    payload = signer.loads(cookie.value)
    old = itsdangerous.URLSafeTimedSerializer(store.console_secret().decode(), salt="jobs-ui-session")
    old_signer = old.make_signer("jobs-ui-session")
    # re-sign the same payload with a timestamp two minutes old
    old_signer.get_timestamp = lambda: int(__import__("time").time()) - 120  # type: ignore[method-assign]
    stale = old_signer.sign(old.dump_payload(payload)).decode()
    b.client.set_cookie("jobs_ui", stale)
    assert b.get("/ui/jobs").status_code == 303


# ---------------------------------------------------------------------------------------------- CSRF
def test_state_changes_need_the_sessions_csrf_token(alpha: Browser, beta: Browser, store: JobStore) -> None:
    job_id = _submit(store, "alpha")
    _problem(alpha.client.post(f"/ui/jobs/{job_id}/cancel"), 403)
    assert alpha.post(f"/ui/jobs/{job_id}/cancel", {"csrf_token": beta.csrf}).status_code == 403
    resp = alpha.client.post(f"/ui/jobs/{job_id}/cancel", headers={"X-CSRF-Token": "x" * 43})
    assert _problem(resp, 403)["type"] == "/problems/csrf-failed"
    assert store.get(job_id).status is JobStatus.QUEUED
    resp = alpha.post(f"/ui/jobs/{job_id}/cancel")
    assert resp.status_code == 303
    assert store.get(job_id).status is JobStatus.CANCELLED
    html = alpha.post(f"/ui/jobs/{job_id}/cancel", {"csrf_token": "bad"})
    assert html.status_code == 403 and html.content_type.startswith("text/html")  # a browser gets a page


# ---------------------------------------------------------------------------------------------- tenants
def test_tenants_never_see_each_others_jobs(alpha: Browser, beta: Browser, store: JobStore, runner: Runner) -> None:
    mine = _submit(store, "alpha")
    theirs = _submit(store, "beta")
    failed = _submit(store, "beta", "primes", limit=10)
    runner.fail(failed)
    listing = alpha.get("/ui/jobs").get_data(as_text=True)
    assert mine in listing and theirs not in listing and failed not in listing
    assert "Tenant" not in listing  # no tenant filter for a tenant key
    assert theirs not in alpha.get("/ui/jobs?tenant=beta").get_data(as_text=True)  # ignored, not obeyed
    for path in (f"/ui/jobs/{theirs}", f"/ui/jobs/{theirs}/state", f"/ui/jobs/{theirs}/params",
                 f"/ui/jobs/{failed}/result"):
        assert alpha.client.get(path).status_code == 404, path
    for action in ("cancel", "retry"):
        assert alpha.post(f"/ui/jobs/{failed}/{action}").status_code == 404
    preview = alpha.post("/ui/bulk/preview", {"act": "retry-selected", "ids": [failed]})
    assert preview.status_code == 200 and 'id="bulk-count">0<' in preview.get_data(as_text=True)
    assert store.get(theirs).status is JobStatus.QUEUED and store.get(failed).status is JobStatus.FAILED
    assert theirs in beta.get("/ui/jobs").get_data(as_text=True)


def test_open_console_admin_sees_all_tenants_with_a_filter(settings: Settings, store: JobStore) -> None:
    a, b = _submit(store, "alpha"), _submit(store, "beta")
    client = console_app(settings, store, None).test_client()
    everything = client.get("/ui/jobs", headers=HTML).get_data(as_text=True)
    assert a in everything and b in everything
    only_beta = client.get("/ui/jobs?tenant=beta", headers=HTML).get_data(as_text=True)
    assert b in only_beta and a not in only_beta


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_filters_are_precise_400_problems(alpha: Browser) -> None:
    cases = {
        "status=bogus": "/query/status",
        "task=" + "x" * 300: "/query/task",
        "queue=a:b": "/query/queue",
        "from=yesterday": "/query/from",
        "to=2026-13-40": "/query/to",
        "param=a..b&value=1": "/query/param",
        "param=a&value=" + "v" * 600: "/query/value",
        "cursor=abc": "/query/cursor",
        "cursor=" + "9" * 40: "/query/cursor",
        "limit=0": "/query/limit",
        "limit=x": "/query/limit",
        "id=not-a-job": "/query/id",
    }
    for query, path in cases.items():
        body = _problem(alpha.client.get(f"/ui/jobs?{query}"), 400)
        assert [e["path"] for e in body["errors"]] == [path], query
    assert alpha.get("/ui/jobs?status=bogus").content_type.startswith("text/html")


def test_unknown_and_malformed_job_ids_are_404(alpha: Browser) -> None:
    for job_id in ("00000000-0000-4000-8000-000000000000", "nope", "%00"):
        body = _problem(alpha.client.get(f"/ui/jobs/{job_id}"), 404)
        assert body["type"] == "/problems/job-not-found"
    _problem(alpha.client.get("/ui/jobs/..%2f..%2fetc"), 404)
    _problem(alpha.client.get("/ui/bulk/0123456789abcdef"), 404)
    _problem(alpha.client.get("/ui/bulk/../../x"), 404)


# ---------------------------------------------------------------------------------------------- pages
def test_jobs_page_filters_search_params_and_pages(alpha: Browser, store: JobStore) -> None:
    bob = _submit(store, "alpha", "echo", user={"name": "bob"}, n=7)
    eve = _submit(store, "alpha", "echo", user={"name": "eve"}, n=7.5)
    others = [_submit(store, "alpha") for _ in range(4)]
    found = alpha.get("/ui/jobs?param=user.name&value=bob").get_data(as_text=True)
    assert bob in found and eve not in found
    assert bob in alpha.get("/ui/jobs?param=n&value=7").get_data(as_text=True)
    assert eve in alpha.get("/ui/jobs?param=n&value=7.5").get_data(as_text=True)
    by_task = alpha.get("/ui/jobs?task=echo").get_data(as_text=True)
    assert bob in by_task and eve in by_task and others[0] not in by_task
    page1 = alpha.get("/ui/jobs?limit=4").get_data(as_text=True)
    next_url = re.search(r'id="next-page" rel="next"|href="([^"]+)" id="next-page"', page1)
    assert next_url is not None and next_url.group(1)
    page2 = alpha.get(next_url.group(1).replace("&amp;", "&") + "&limit=4").get_data(as_text=True)
    first, second = set(re.findall(r'data-job="([^"]+)"', page1)), set(re.findall(r'data-job="([^"]+)"', page2))
    assert len(first) == 4 and len(second) == 2 and not first & second
    assert first | second == {bob, eve, *others}


def test_created_range_filter(alpha: Browser, store: JobStore) -> None:
    job_id = _submit(store, "alpha")
    created = store.get(job_id).created_at.strftime("%Y-%m-%dT%H:%M:%S")
    assert job_id in alpha.get(f"/ui/jobs?from={created}").get_data(as_text=True)
    assert job_id not in alpha.get("/ui/jobs?to=2001-01-01T00:00").get_data(as_text=True)
    assert job_id not in alpha.get("/ui/jobs?from=2999-01-01T00:00").get_data(as_text=True)


def test_job_page_shows_params_result_error_and_commands(alpha: Browser, store: JobStore, runner: Runner) -> None:
    big = _submit(store, "alpha", "echo", blob="x" * 20_000)
    runner.succeed(big, {"answer": 42})
    html = alpha.get(f"/ui/jobs/{big}").get_data(as_text=True)
    assert "full params" in html and "&#34;answer&#34;: 42" in html
    assert alpha.client.get(f"/ui/jobs/{big}/params").get_json()["blob"] == "x" * 20_000
    full = alpha.client.get(f"/ui/jobs/{big}/result")
    assert full.get_json() == {"answer": 42} and full.headers["Content-Security-Policy"] == "sandbox"
    assert "curl -sS -X POST" in html and "jobs submit echo" in html
    failed = _submit(store, "alpha", "primes", limit=10)
    runner.fail(failed, "kaput")
    html = alpha.get(f"/ui/jobs/{failed}").get_data(as_text=True)
    assert "RuntimeError" in html and "kaput" in html and "Traceback ..." in html and 'id="retry-job"' in html
    attempts = store.attempt_log(failed)
    assert [(a["n"], a["worker"], a["outcome"]) for a in attempts] == [(1, "test-worker", "failed")]
    assert attempts[0]["start"] <= attempts[0]["end"] and 'id="attempts"' in html
    alpha.post(f"/ui/jobs/{failed}/retry")
    runner.succeed(failed, {"second": "time"})
    assert [a["outcome"] for a in store.attempt_log(failed)] == ["failed", "succeeded"]
    assert html.count("badge failed") >= 1
    state = alpha.client.get(f"/ui/jobs/{failed}/state").get_json()
    assert state["status"] == "succeeded" and state["id"] == failed


def test_run_task_form_validates_like_post_jobs(alpha: Browser, app: Flask, store: JobStore) -> None:
    page = alpha.get("/ui/tasks").get_data(as_text=True)
    assert 'name="p.limit"' in page and 'type="number"' in page and 'name="p.seconds"' in page
    bad = alpha.client.post("/ui/tasks/primes/run", data={"csrf_token": alpha.csrf, "p.limit": "1"})
    api = app.test_client().post("/jobs", json={"task": "primes", "params": {"limit": 1}},
                                 headers={"Authorization": f"Bearer {KEY_ALPHA}"})
    assert _problem(bad, 422)["errors"] == api.get_json()["errors"]
    typed = alpha.client.post("/ui/tasks/primes/run", data={"csrf_token": alpha.csrf, "p.limit": "ten"})
    assert _problem(typed, 422)["errors"][0]["path"] == "/params/limit"
    html = alpha.post("/ui/tasks/primes/run", {"p.limit": "1"})
    assert html.status_code == 422 and "/params/limit" in html.get_data(as_text=True)
    ok = alpha.post("/ui/tasks/primes/run", {"p.limit": "50", "max_attempts": "2"})
    assert ok.status_code == 303
    job = store.get(ok.headers["Location"].rsplit("/", 1)[1])
    assert job.owner == "alpha" and job.params == {"limit": 50} and job.max_attempts == 2
    raw = alpha.post("/ui/tasks/echo/run", {"params_json": '{"a": [1, 2]}'})
    assert store.get(raw.headers["Location"].rsplit("/", 1)[1]).params == {"a": [1, 2]}
    _problem(alpha.client.post("/ui/tasks/echo/run", data={"csrf_token": alpha.csrf, "params_json": "{"}), 400)
    _problem(alpha.client.post("/ui/tasks/echo/run", data={"csrf_token": alpha.csrf, "params_json": "[]"}), 422)
    _problem(alpha.client.post("/ui/tasks/nope/run", data={"csrf_token": alpha.csrf}), 404)


def test_workers_page_lists_heartbeats_naming_only_the_tenants_own_jobs(alpha: Browser, store: JobStore) -> None:
    mine, theirs = _submit(store, "alpha"), _submit(store, "beta")
    status = {"id": "w-1", "queues": ["jobs"], "tasks": ["echo"], "pid": 42, "concurrency": 4, "busy": 2,
              "jobs": [mine, theirs], "stopping": False}
    store.heartbeat("w-1", [], status, 30)
    html = alpha.get("/ui/workers").get_data(as_text=True)
    assert "w-1" in html and "2 / 4" in html and "alive" in html and "echo" in html
    # regression (found by the tenant-isolation scenario): another tenant's running job was named here
    assert mine[:8] in html and theirs not in html and theirs[:8] not in html and "1 of other tenants" in html


def test_overview_counts_queues_and_charts_tasks_by_failure_rate(alpha: Browser, store: JobStore,
                                                                   runner: Runner) -> None:
    for _ in range(3):
        _submit(store, "alpha")
    for _ in range(3):
        runner.succeed(_submit(store, "alpha", "echo"), {"ok": True})
    runner.fail(_submit(store, "alpha", "primes", limit=10))
    html = alpha.get("/ui/").get_data(as_text=True)
    row = re.search(r'<tr data-queue="[^"]+">(.*?)</tr>', html, re.S)
    assert row is not None and re.findall(r'<td class="num">(\d+)</td>', row.group(1))[0] == "3"  # waiting
    tasks = re.findall(r'<tr data-task="([^"]+)">', html)
    assert tasks == ["echo", "primes"]
    assert html.count('<svg class="spark"') == 8 and "<polyline" in html
    worst_first = alpha.get("/ui/?sort=failure").get_data(as_text=True)
    assert re.findall(r'<tr data-task="([^"]+)">', worst_first) == ["primes", "echo"]
    assert "100.0%" in worst_first and "0.0%" in worst_first
    assert _problem(alpha.client.get("/ui/?sort=bogus"), 400)["errors"][0]["path"] == "/query/sort"
    # run-time percentiles: one cell per task row on the overview, an hour and a day row per task on /ui/tasks
    cells = re.findall(r'<td class="num run-time">([^<]+)</td>', html)
    assert len(cells) == 2 and all(re.fullmatch(r"(\S+ (ms|s|min) / ){2}\S+ (ms|s|min)", c) for c in cells), cells
    tasks_page = alpha.get("/ui/tasks").get_data(as_text=True)
    echo = tasks_page[tasks_page.index('id="task-echo"'):]
    assert re.search(r'<th scope="row">last hour</th><td class="num">3</td><td class="num">[0-9.]+ (ms|s)</td>', echo)


def test_queues_page_admin_pauses_resumes_and_caps(settings: Settings, store: JobStore) -> None:
    app = console_app(settings, store, ROLES)
    admin, operator = Browser(app.test_client()), Browser(app.test_client())
    admin.login(ROLE_KEYS["admin"])
    operator.login(ROLE_KEYS["operator"])
    queue = settings.queue
    assert f'id="pause-{queue}"' in admin.get("/ui/queues").get_data(as_text=True)
    assert f'id="pause-{queue}"' not in operator.get("/ui/queues").get_data(as_text=True)
    _problem(operator.client.post(f"/ui/queues/{queue}/pause", data={"csrf_token": operator.csrf}), 403)
    assert not store.queue_stats(queue).paused
    assert admin.post(f"/ui/queues/{queue}/pause").status_code == 303
    assert store.queue_stats(queue).paused
    assert f'id="resume-{queue}"' in admin.get("/ui/queues").get_data(as_text=True)
    assert admin.post(f"/ui/queues/{queue}/resume").status_code == 303 and not store.queue_stats(queue).paused
    assert admin.post(f"/ui/queues/{queue}/cap", {"cap": "3"}).status_code == 303
    assert store.queue_stats(queue).cap == 3
    assert admin.post(f"/ui/queues/{queue}/cap", {"cap": ""}).status_code == 303
    assert store.queue_stats(queue).cap is None
    for bad in ("-1", "x", "100001", "1.5"):
        body = _problem(admin.client.post(f"/ui/queues/{queue}/cap", data={"csrf_token": admin.csrf, "cap": bad}), 400)
        assert body["errors"][0]["path"] == "/form/cap"
    _problem(admin.client.post("/ui/queues/no-such-queue/pause", data={"csrf_token": admin.csrf}), 404)
    assert "no-such-queue" not in store.queue_names()


# ---------------------------------------------------------------------------------------------- bulk
def test_bulk_retry_of_everything_matching_changes_exactly_the_previewed_jobs(
    alpha: Browser, store: JobStore, runner: Runner
) -> None:
    failed = [_submit(store, "alpha", "primes", limit=10) for _ in range(5)]
    for job_id in failed:
        runner.fail(job_id)
    queued = [_submit(store, "alpha") for _ in range(2)]
    other_tenant = _submit(store, "beta", "primes", limit=10)
    runner.fail(other_tenant)
    preview = alpha.post("/ui/bulk/preview?status=failed", {"act": "retry-filter"})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and 'id="bulk-count">5<' in html and "status=failed" in html
    late = _submit(store, "alpha", "primes", limit=10)  # fails after the preview: not in the plan
    runner.fail(late)
    op_id = re.search(r'/ui/bulk/([0-9a-f]{16})/run', html)
    assert op_id is not None
    run = alpha.post(f"/ui/bulk/{op_id.group(1)}/run")
    assert run.status_code == 303
    status_url = f"/ui/bulk/{op_id.group(1)}/status"
    import time

    deadline = time.monotonic() + 20
    while (body := alpha.client.get(status_url).get_json())["state"] != "done":
        assert time.monotonic() < deadline, body
        time.sleep(0.05)
    assert body["planned"] == 5 and body["changed"] == 5
    assert all(store.get(j).status is JobStatus.QUEUED for j in failed)
    assert store.get(late).status is JobStatus.FAILED and store.get(other_tenant).status is JobStatus.FAILED
    assert all(store.get(j).status is JobStatus.QUEUED for j in queued)
    again = alpha.post(f"/ui/bulk/{op_id.group(1)}/run")  # a double submit runs nothing twice
    assert again.status_code == 303
    audit = alpha.get("/ui/audit").get_data(as_text=True)
    assert audit.count(f">bulk:{op_id.group(1)}<") == 2 and "alpha/operator (key " in audit
    entries = store.audit_log()
    assert [(e["action"], e["outcome"], e["via"], e["tenant"]) for e in entries[:2]] == [
        ("bulk.retry", "ok", "console", "alpha"), ("bulk.retry", "started", "console", "alpha")]
    assert entries[0]["count"] == 5 and entries[1]["count"] == 5
    assert orjson.loads(entries[1]["detail"])["filter"] == {"tenant": "alpha", "status": "failed"}


def test_bulk_preview_caps_and_rejects_bad_input(settings: Settings, store: JobStore, alpha: Browser) -> None:
    _problem(alpha.client.post("/ui/bulk/preview", data={"csrf_token": alpha.csrf, "act": "delete-all"}), 400)
    _problem(alpha.client.post("/ui/bulk/preview", data={"csrf_token": alpha.csrf, "act": "retry-selected"}), 400)
    _problem(alpha.client.post("/ui/bulk/preview", data={"csrf_token": alpha.csrf, "act": "retry-selected",
                                                          "ids": ["../x"]}), 400)
    capped = console_app(settings, store, f"alpha:{KEY_ALPHA}", bulk_max=3)
    b = Browser(capped.test_client())
    b.login(KEY_ALPHA)
    for _ in range(5):
        _submit(store, "alpha")
    html = b.post("/ui/bulk/preview", {"act": "cancel-filter"}).get_data(as_text=True)
    assert 'id="bulk-count">3<' in html and "more may match" in html


def test_bulk_plans_are_private(alpha: Browser, beta: Browser, store: JobStore) -> None:
    _submit(store, "alpha")
    html = alpha.post("/ui/bulk/preview", {"act": "cancel-filter"}).get_data(as_text=True)
    op_id = re.search(r'/ui/bulk/([0-9a-f]{16})/run', html)
    assert op_id is not None
    _problem(beta.client.get(f"/ui/bulk/{op_id.group(1)}/status"), 404)
    assert beta.post(f"/ui/bulk/{op_id.group(1)}/run").status_code == 404
    assert store.bulk(op_id.group(1)) is not None and store.bulk(op_id.group(1))["state"] == "planned"  # type: ignore[index]


def test_a_console_url_with_no_page_is_the_error_page_for_a_browser(alpha: Browser) -> None:
    """A /ui URL that matches no console page (404) or not with that method (405) never reaches the console's
    own error handler (no view matched): a browser still gets the console's error page, others problem+json,
    and the rest of the API is unchanged."""
    for method, path, status in (("GET", "/ui/nope", 404), ("POST", "/ui/workers", 405),
                                 ("GET", "/ui/jobs/x/cancel", 405), ("POST", "/ui/jobs/a%2Fb/cancel", 404)):
        page = alpha.client.open(path, method=method, headers={"Accept": "text/html"})
        assert page.status_code == status and page.content_type.startswith("text/html"), (path, page.status_code)
        assert f"<h1>{status} ·" in page.get_data(as_text=True), path
        assert page.headers["Content-Security-Policy"].startswith("default-src 'self'") and \
            page.headers["Cache-Control"] == "no-store"
        _problem(alpha.client.open(path, method=method), status)
    _problem(alpha.client.get("/nope", headers={"Accept": "text/html"}), 404)  # not the console: the API's


def test_json_helpers_are_problem_json(alpha: Browser) -> None:
    resp = alpha.client.get("/ui/jobs/00000000-0000-4000-8000-000000000000/state")
    assert orjson.loads(resp.get_data())["status"] == 404


# ---------------------------------------------------------------------------------------------- roles
ROLE_KEYS = {"viewer": "key-viewer-0123456789ab", "operator": "key-operator-0123456789",
             "admin": "key-admin-0123456789ab"}
ROLES = ",".join(f"alpha:{k}:{r}" if r != "admin" else f"ops:{k}:admin" for r, k in ROLE_KEYS.items())
ACTIONS = ["/ui/jobs/{job}/cancel", "/ui/jobs/{job}/retry", "/ui/tasks/echo/run", "/ui/bulk/preview"]


def test_every_console_route_declares_a_role(app: Flask) -> None:
    from jobs_api.auth import required_role
    from jobs_core.config import Role

    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if rule.rule.startswith("/ui") and rule.endpoint not in ("ui.login", "ui.static"):
                needed = required_role(rule.endpoint)
                posts = "POST" in (rule.methods or ()) and rule.endpoint != "ui.logout"
                # the API's own roles: queue controls and the webhook secret's rotation are admin-only
                expected = Role.ADMIN if rule.endpoint in ("ui.queue_action", "ui.rotate_webhook_secret") else (
                    Role.OPERATOR if posts else Role.VIEWER)
                assert needed is expected, rule.rule


def test_a_viewer_sees_no_buttons_and_a_direct_post_is_403(settings: Settings, store: JobStore,
                                                            runner: Runner) -> None:
    app = console_app(settings, store, ROLES)
    viewer = Browser(app.test_client())
    viewer.login(ROLE_KEYS["viewer"])
    queued = _submit(store, "alpha")
    failed = _submit(store, "alpha", "primes", limit=10)
    runner.fail(failed)
    for path in ("/ui/jobs", f"/ui/jobs/{queued}", f"/ui/jobs/{failed}", "/ui/tasks", "/ui/webhooks",
                 "/ui/schedules"):
        html = viewer.get(path).get_data(as_text=True)
        assert set(re.findall(r'<form method="post" action="([^"]+)"', html)) == {"/ui/logout"}, path
        assert 'form="bulk"' not in html and "Run echo" not in html and "cancel-job" not in html
    for path in ACTIONS:
        resp = viewer.client.post(path.format(job=queued), data={"csrf_token": viewer.csrf, "act": "cancel-filter"})
        assert _problem(resp, 403)["type"] == "/problems/forbidden", path
    assert store.get(queued).status is JobStatus.QUEUED and store.get(failed).status is JobStatus.FAILED
    assert store.counts()["queued"] == 1
    operator = Browser(app.test_client())
    operator.login(ROLE_KEYS["operator"])
    assert 'id="cancel-job"' in operator.get(f"/ui/jobs/{queued}").get_data(as_text=True)


def test_an_admin_sees_every_tenant_and_filters_by_tenant(settings: Settings, store: JobStore) -> None:
    app = console_app(settings, store, ROLES)
    admin = Browser(app.test_client())
    admin.login(ROLE_KEYS["admin"])
    a, b = _submit(store, "alpha"), _submit(store, "beta")
    html = admin.get("/ui/jobs").get_data(as_text=True)
    assert a in html and b in html and 'id="f-tenant"' in html
    only_beta = admin.get("/ui/jobs?tenant=beta").get_data(as_text=True)
    assert b in only_beta and a not in only_beta
    assert admin.get(f"/ui/jobs/{a}").status_code == 200
    assert admin.post(f"/ui/jobs/{b}/cancel").status_code == 303
    assert store.get(b).status is JobStatus.CANCELLED


def test_attempt_log_records_lost_and_handed_back_attempts(settings: Settings) -> None:
    import time

    store = JobStore.from_settings(settings.replace(lease_seconds=1.0))
    job_id = _submit(store, "alpha")
    first = store.claim("w-dies", 1)[0]
    time.sleep(1.2)
    assert job_id in store.reap().requeued  # the lease expired: the worker is gone
    second = store.claim("w-stops", 1)[0]
    store.finish("w-stops", job_id, second.attempt, "handback")
    log = store.attempt_log(job_id)
    assert [(a["n"], a["worker"], a["outcome"]) for a in log] == [(first.attempt, "w-dies", "lost"),
                                                                   (2, "w-stops", "handback")]
    third = store.claim("w-runs", 1)[0]
    assert store.attempt_log(job_id)[-1] == {"n": third.attempt, "worker": "w-runs",
                                              "start": store.attempt_log(job_id)[-1]["start"]}
