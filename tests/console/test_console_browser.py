"""The console in a real browser (Chromium via Playwright) against a real stack: gunicorn, workers, Redis.

Also writes docs/img/console-overview.png and docs/img/console-job.png, which the README shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from api.stack import ApiStack, http
from playwright.sync_api import Page, expect

from console.browser import ROOT, Pages, chromium  # noqa: F401  (fixture)

KEYS = {"alpha": "key-alpha-browser-0123456789", "beta": "key-beta-browser-9876543210",
        "viewer": "key-viewer-browser-0123456789", "admin": "key-admin-browser-0123456789"}
#: user -> JOBS_API_KEYS entry (tenant:key[:role]); alpha and beta are operators of their tenants
ENTRIES = {"alpha": f"alpha:{KEYS['alpha']}", "beta": f"beta:{KEYS['beta']}",
           "viewer": f"alpha:{KEYS['viewer']}:viewer", "admin": f"ops:{KEYS['admin']}:admin"}
DOCS_IMG = ROOT / "docs" / "img"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ApiStack]:
    api_keys = ",".join(ENTRIES.values())
    s = ApiStack(tmp_path_factory.mktemp("console-stack"), redis_url, workers=1, api_keys=api_keys,
                 extra_env={"JOBS_CONCURRENCY": "2", "JOBS_API_THREADS": "16", "JOBS_API_STREAMS": "6"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def api(stack: ApiStack, tenant: str, method: str, path: str, body: Any = None) -> Any:
    status, _, data = http(method, stack.url + path, body, {"Authorization": f"Bearer {KEYS[tenant]}"})
    assert status < 300, (status, data[:300])
    import json

    return json.loads(data)


def submit(stack: ApiStack, tenant: str, task: str, **body: Any) -> str:
    job_id: str = api(stack, tenant, "POST", "/jobs", {"task": task, **body})["id"]
    return job_id


def login(page: Page, tenant: str) -> None:
    page.goto("/ui/login")
    page.get_by_label("API key").fill(KEYS[tenant])
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".principal")).to_contain_text(tenant)


def wait_status(stack: ApiStack, tenant: str, job_id: str, statuses: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while api(stack, tenant, "GET", f"/jobs/{job_id}?wait=2")["status"] not in statuses:
        assert time.monotonic() < deadline, f"{job_id} never became {statuses}"


def test_every_page_loads_without_console_errors(pages: Pages, stack: ApiStack) -> None:
    job_id = submit(stack, "alpha", "echo", params={"hello": "world"})
    page = pages.new()
    login(page, "alpha")
    for path, heading in (("/ui/", "Overview"), ("/ui/jobs", "Jobs"), ("/ui/workers", "Workers"),
                          ("/ui/tasks", "Tasks"), ("/ui/audit", "Audit log"), ("/ui/schedules", "Schedules"),
                          ("/ui/webhooks", "Webhooks"), (f"/ui/jobs/{job_id}", "Job")):
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_contain_text(heading)
    # keyboard: the skip link is the first stop and every control has a label
    page.goto("/ui/jobs")
    page.keyboard.press("Tab")
    expect(page.locator(".skip")).to_be_focused()
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
        .filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name || e.id)""")
    assert unlabelled == []
    page.goto("/ui/workers")
    expect(page.locator("#workers")).to_contain_text("alive")
    assert pages.errors == []


def test_a_submitted_job_appears_live_and_its_progress_moves(pages: Pages, stack: ApiStack) -> None:
    page = pages.new()
    login(page, "alpha")
    page.goto("/ui/jobs")
    expect(page.locator("#live-state")).to_contain_text("streaming events")  # GET /events, not polling
    job_id = submit(stack, "alpha", "sleep", params={"seconds": 8})
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_be_visible(timeout=10_000)  # no reload by the test
    page.goto(f"/ui/jobs/{job_id}")
    bar = page.locator("#job-progress")
    seen: list[float] = []
    deadline = time.monotonic() + 20
    while len(set(seen)) < 3 and time.monotonic() < deadline:
        value = bar.evaluate("b => b.hasAttribute('value') ? b.value : -1")
        if value > 0:
            seen.append(round(value, 2))
        page.wait_for_timeout(200)
    assert len(set(seen)) >= 3 and seen == sorted(seen), f"progress did not move forward: {seen}"
    expect(page.locator("#job-status")).to_contain_text("succeeded", timeout=20_000)
    expect(page.locator("#job-result")).to_contain_text("slept")
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    expect(page.locator("#attempts")).to_contain_text("succeeded")
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / "console-job.png"), full_page=True)
    assert pages.errors == []


def _until(page: Page, expression: str, timeout: float = 10) -> None:
    """Poll ``expression`` in the page until true (wait_for_function evaluates a string, which the
    console's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({expression})"):
        assert time.monotonic() < deadline, f"never true: {expression}"
        page.wait_for_timeout(100)


def test_a_batch_is_one_event_per_job_in_the_browser_and_a_reconnect_resumes_inside_its_entry(
        pages: Pages, stack: ApiStack) -> None:
    """A batch submission writes its jobs' events as one stream entry (issue 16): Chromium's EventSource gets
    one `job` event per job with the ids `<entry>:<k>`, reconnects by itself (each
    stream here ends after a second) and gets nothing twice and the next job once; a stream opened with
    Last-Event-ID inside that entry starts right after it; the console's jobs page shows the batch without a
    reload."""
    page = pages.new()
    login(page, "alpha")
    page.goto("/ui/jobs")
    expect(page.locator("#live-state")).to_contain_text("streaming events")
    page.evaluate("""() => {
        window.seen = []; window.opens = [];
        const s = new EventSource('/events?max_seconds=1');
        s.onopen = () => window.opens.push(window.seen.length ? window.seen[window.seen.length - 1][0] : '');
        s.addEventListener('job', e => window.seen.push([e.lastEventId, JSON.parse(e.data)]));
    }""")
    _until(page, "window.opens.length >= 1")
    # delayed: no worker claims them while the test looks, so their entry is the stream's last one
    batch = api(stack, "alpha", "POST", "/jobs/batch",
                {"jobs": [{"task": "echo", "params": {"i": i}, "delay": 120} for i in range(3)]})
    ids = [j["id"] for j in batch["jobs"]]
    _until(page, f"window.seen.filter(e => {ids!r}.includes(e[1].job)).length >= 3")
    for job_id in ids:
        expect(page.locator(f'tr[data-job="{job_id}"]')).to_be_visible(timeout=10_000)  # no reload by the test
    reopened = len(page.evaluate("window.opens"))
    _until(page, f"window.opens.length > {reopened}")  # reconnected by itself
    later = submit(stack, "alpha", "echo", params={"after": "reconnect"}, delay=120)
    _until(page, f"window.seen.some(e => e[1].job === {later!r})")
    seen = page.evaluate("window.seen")
    mine = [(i, e["job"]) for i, e in seen if e["job"] in ids]
    entry = mine[0][0].split(":")[0]
    assert mine == [(f"{entry}:{k}", job_id) for k, job_id in enumerate(ids)]
    # a stream resumed from inside the entry (the query form of Last-Event-ID) starts right after that event
    page.evaluate(f"""() => {{
        window.resumed = [];
        const s = new EventSource('/events?max_seconds=1&last_event_id={entry}:0');
        s.addEventListener('job', e => {{ window.resumed.push([e.lastEventId, JSON.parse(e.data).job]); }});
    }}""")
    _until(page, f"window.resumed.some(e => e[1] === {later!r})")
    resumed = page.evaluate("window.resumed")
    assert resumed[:2] == [[f"{entry}:1", ids[1]], [f"{entry}:2", ids[2]]] and ids[0] not in str(resumed)
    event_ids = [i for i, _ in seen]
    assert len(event_ids) == len(set(event_ids)), "an event came twice across reconnects"
    assert [e["job"] for _, e in seen].count(later) == 1
    for job_id in [*ids, later]:
        api(stack, "alpha", "DELETE", f"/jobs/{job_id}")
    assert pages.errors == []


def _visibility(page: Page, state: str) -> None:
    page.evaluate("""s => { Object.defineProperty(document, 'visibilityState', {value: s, configurable: true});
                            document.dispatchEvent(new Event('visibilitychange')); }""", state)


def test_updates_pause_while_the_tab_is_hidden(pages: Pages, stack: ApiStack) -> None:
    page = pages.new()
    login(page, "alpha")
    page.goto("/ui/jobs")
    expect(page.locator("#live-state")).to_contain_text("streaming events")
    _visibility(page, "hidden")
    expect(page.locator("#live-state")).to_contain_text("Paused")
    job_id = submit(stack, "alpha", "echo", params={"while": "hidden"})
    wait_status(stack, "alpha", job_id, {"succeeded"})
    page.wait_for_timeout(2500)
    assert page.locator(f'tr[data-job="{job_id}"]').count() == 0  # nothing fetched while hidden
    _visibility(page, "visible")
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_be_visible(timeout=5_000)
    assert pages.errors == []


def test_queue_changes_show_live_on_open_queues_and_overview_pages(pages: Pages, stack: ApiStack) -> None:
    """Issue 13: `event: queue` updates an open Queues page (a viewer's) and Overview (an operator's) without
    a reload, whether the change comes through the API or another console session."""
    queue = api(stack, "admin", "GET", "/queues")["queues"][0]["name"]
    row = f'#queues tr[data-queue="{queue}"]'
    watchers = []
    for user, path in (("viewer", "/ui/queues"), ("alpha", "/ui/")):
        page = pages.new()
        login(page, user)
        page.goto(path)
        expect(page.locator("#live-state")).to_contain_text("streaming events")
        page.evaluate("window.__notReloaded = true")
        expect(page.locator(f"{row} .badge.paused")).to_have_count(0)
        watchers.append(page)
    try:
        api(stack, "admin", "POST", f"/queues/{queue}/pause")
        for page in watchers:
            expect(page.locator(f"{row} .badge.paused")).to_be_visible(timeout=10_000)
        admin = pages.new()  # a second session resumes it from the console
        login(admin, "admin")
        admin.goto("/ui/queues")
        admin.locator(f"#resume-{queue}").click()
        expect(admin.locator(f"#pause-{queue}")).to_be_visible()  # the console answered with the resumed queue
        assert api(stack, "admin", "GET", f"/queues/{queue}")["paused"] is False
        for page in watchers:
            expect(page.locator(f"{row} .badge.paused")).to_have_count(0, timeout=10_000)
            assert page.evaluate("window.__notReloaded === true")
    finally:
        api(stack, "admin", "POST", f"/queues/{queue}/resume")
    assert pages.errors == []
    _release_streams(stack, [*watchers, admin])


def _release_streams(stack: ApiStack, pages_: list[Page]) -> None:
    """Leave the pages (their EventSource closes) and wait until the API has stream slots again, so the
    next test's pages stream instead of meeting a 503 (a server frees a gone client's slot within 5 s)."""
    for page in pages_:
        page.goto("about:blank")
    # 6 s of streams always granted (both gunicorn processes answer some): the pages' slots are back
    free, deadline = 0, time.monotonic() + 60
    while free < 24 and time.monotonic() < deadline:
        status, _, _ = http("GET", stack.url + "/events?max_seconds=0",
                            None, {"Authorization": f"Bearer {KEYS['admin']}"})
        free = free + 1 if status == 200 else 0
        time.sleep(0.25)


def test_filters_live_in_the_url_and_back_restores_them(pages: Pages, stack: ApiStack) -> None:
    page = pages.new()
    login(page, "alpha")
    page.goto("/ui/jobs")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(re.compile(r"status=failed"))
    page.get_by_label("Task", exact=True).fill("echo")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(re.compile(r"status=failed.*task=echo"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"status=failed"))
    assert "task=echo" not in page.url
    expect(page.get_by_label("Status")).to_have_value("failed")
    expect(page.get_by_label("Task", exact=True)).to_have_value("")
    page.go_back()
    expect(page.get_by_label("Status")).to_have_value("")
    assert pages.errors == []


def test_bulk_cancel_previews_the_count_and_changes_exactly_those_jobs(pages: Pages, stack: ApiStack) -> None:
    marked = [submit(stack, "alpha", "sleep", params={"seconds": 7.25}, delay=3600) for _ in range(4)]
    unmarked = submit(stack, "alpha", "sleep", params={"seconds": 7.5}, delay=3600)
    other_tenant = submit(stack, "beta", "sleep", params={"seconds": 7.25}, delay=3600)
    page = pages.new()
    login(page, "alpha")
    page.goto("/ui/jobs?task=sleep&param=seconds&value=7.25")
    expect(page.locator("#jobs-rows tr[data-job]")).to_have_count(4)
    page.get_by_role("button", name="Cancel all matching the filter…").click()
    expect(page.locator("#bulk-count")).to_have_text("4")
    expect(page.locator("main")).to_contain_text("param=seconds=7.25")
    assert all(api(stack, "alpha", "GET", f"/jobs/{j}")["status"] == "queued" for j in marked)  # nothing yet
    page.get_by_role("button", name="Cancel 4 jobs").click()
    expect(page.locator("#bulk-state")).to_have_text("done", timeout=15_000)
    expect(page.locator("#bulk-changed")).to_have_text("4")
    assert [api(stack, "alpha", "GET", f"/jobs/{j}")["status"] for j in marked] == ["cancelled"] * 4
    assert api(stack, "alpha", "GET", f"/jobs/{unmarked}")["status"] == "queued"
    assert api(stack, "beta", "GET", f"/jobs/{other_tenant}")["status"] == "queued"
    page.goto("/ui/audit")
    page.get_by_label("Action").fill("bulk.")  # the filter form: alpha's log also has its logins
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"action=bulk\."))
    expect(page.locator("#audit tbody tr")).to_have_count(2)
    expect(page.locator("#audit")).to_contain_text("alpha/operator")
    expect(page.locator("#audit tbody tr").first).to_contain_text("bulk.cancel")
    assert pages.errors == []


def jobs_of_both_tenants(pages: Pages, stack: ApiStack, user: str) -> tuple[Page, str, str]:
    """One job of alpha's and one of beta's; the Jobs page open as ``user``, showing beta's job."""
    alphas = submit(stack, "alpha", "echo", params={"secret": "alpha-only"})
    betas = submit(stack, "beta", "echo", params={"secret": "beta-only"})
    page = pages.new()
    login(page, user)
    page.goto("/ui/jobs")
    expect(page.locator(f'tr[data-job="{betas}"]')).to_be_visible()
    return page, alphas, betas


def test_tenants_never_see_each_others_jobs(pages: Pages, stack: ApiStack) -> None:
    page, alphas, _ = jobs_of_both_tenants(pages, stack, "beta")
    assert page.locator(f'tr[data-job="{alphas}"]').count() == 0
    assert "Tenant" not in page.locator("#filters").inner_text()
    page.goto("/ui/jobs?tenant=alpha&param=secret&value=alpha-only")
    assert page.locator("#jobs-rows tr[data-job]").count() == 0
    response = page.goto(f"/ui/jobs/{alphas}")
    assert response is not None and response.status == 404
    expect(page.locator("main")).to_contain_text("no job with id")


def test_login_logout_and_csrf_rejection(pages: Pages, stack: ApiStack) -> None:
    job_id = submit(stack, "alpha", "sleep", params={"seconds": 1}, delay=3600)
    page = pages.new()
    page.goto("/ui/jobs")
    expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/jobs"))
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    page.get_by_label("API key").fill(KEYS["alpha"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/ui/jobs$"))
    cookie = next(c for c in page.context.cookies() if c["name"] == "jobs_ui")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and KEYS["alpha"] not in cookie["value"]
    page.goto(f"/ui/jobs/{job_id}")
    page.locator('form:has(#cancel-job) input[name="csrf_token"]').evaluate("e => e.value = 'forged'")
    page.locator("#cancel-job").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("403")
    assert api(stack, "alpha", "GET", f"/jobs/{job_id}")["status"] == "queued"
    page.goto(f"/ui/jobs/{job_id}")
    page.locator("#cancel-job").click()
    expect(page.locator("#job-status")).to_contain_text("cancelled")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/ui/login"))
    page.goto("/ui/jobs")
    expect(page).to_have_url(re.compile(r"/ui/login"))


def test_a_viewer_sees_no_buttons_and_a_direct_post_is_403(pages: Pages, stack: ApiStack) -> None:
    job_id = submit(stack, "alpha", "sleep", params={"seconds": 1}, delay=3600)
    page = pages.new()
    login(page, "viewer")
    for path in ("/ui/jobs", f"/ui/jobs/{job_id}", "/ui/tasks"):
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert page.locator("main form[method=post] button").count() == 0, path  # search forms stay
    csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
    resp = page.request.post(f"/ui/jobs/{job_id}/cancel", form={"csrf_token": csrf or ""})
    assert resp.status == 403 and resp.json()["type"] == "/problems/forbidden"
    assert api(stack, "alpha", "GET", f"/jobs/{job_id}")["status"] == "queued"
    assert pages.errors == []


def test_an_admin_sees_every_tenant_and_filters_by_tenant(pages: Pages, stack: ApiStack) -> None:
    page, alphas, betas = jobs_of_both_tenants(pages, stack, "admin")
    expect(page.locator(f'tr[data-job="{alphas}"]')).to_be_visible()
    page.get_by_label("Tenant").fill("beta")
    page.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(re.compile(r"tenant=beta"))
    expect(page.locator(f'tr[data-job="{betas}"]')).to_be_visible()
    assert page.locator(f'tr[data-job="{alphas}"]').count() == 0
    assert pages.errors == []


def _background(page: Page) -> str:
    return str(page.evaluate("getComputedStyle(document.body).backgroundColor"))


def test_dark_mode_follows_the_os_and_the_toggle_sticks(pages: Pages, stack: ApiStack) -> None:
    light = pages.new(color_scheme="light")
    login(light, "alpha")
    assert _background(light) == "rgb(255, 255, 255)"
    dark = pages.new(color_scheme="dark")
    login(dark, "alpha")
    assert _background(dark) == "rgb(13, 17, 23)"
    dark.get_by_role("button", name="Toggle dark mode").click()
    assert _background(dark) == "rgb(255, 255, 255)"
    dark.reload()
    assert _background(dark) == "rgb(255, 255, 255)"  # kept in localStorage
    dark.get_by_role("button", name="Toggle dark mode").click()
    assert _background(dark) == "rgb(13, 17, 23)"
    assert pages.errors == []


def test_overview_screenshot(pages: Pages, stack: ApiStack) -> None:
    for _ in range(3):
        submit(stack, "alpha", "sleep", params={"seconds": 30}, delay=600)
    done = submit(stack, "alpha", "echo", params={"n": 1})
    failed = submit(stack, "alpha", "fail", params={"message": "demo failure"})
    wait_status(stack, "alpha", done, {"succeeded"})
    wait_status(stack, "alpha", failed, {"failed"})
    page = pages.new(color_scheme="light")
    login(page, "alpha")
    page.goto("/ui/")
    expect(page.locator("#queues")).to_be_visible()
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOCS_IMG / "console-overview.png"), full_page=True)
    assert pages.errors == []


def test_screenshots_exist() -> None:
    for name in ("console-overview.png", "console-job.png"):
        assert (DOCS_IMG / name).stat().st_size > 10_000, name



