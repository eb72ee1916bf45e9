"""Scenario 6, tenant isolation: tenant B can not see, list, read the result of, cancel or retry tenant A's
jobs (404 on every endpoint, A's jobs unchanged), nor reuse A's idempotency keys (single or batch), nor see,
replace or delete A's webhook subscription; queue statistics name no job or tenant; roles hold (a viewer
changes nothing, only the admin pauses, caps or reads across tenants); and no API key or Redis password
appears in any log. A stream entry holding several tenants' job events (one script call) shows each
tenant only its own. Every route the app serves (its url_map) must be probed by another tenant,
a smaller role or a missing key, unless it holds no tenant's data (ISOLATION_EXEMPT, each with its reason).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from jobs_core.store import JobStore

from reliability import report, routes
from reliability.console import login
from reliability.http import TERMINAL, Http
from reliability.stack import Stack

STATUS_FILTERS = ("", "queued", "running", "succeeded", "failed", "cancelled")


def _wait(h: Http, job_id: str, want: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = h.request("GET", f"/jobs/{job_id}?wait=5").json()
        if job["status"] in want or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def _listed(h: Http, status: str, task: str = "") -> set[str]:
    ids: set[str] = set()
    cursor = None
    while True:
        query = f"/jobs?limit=200&status={status}&task={task}" + (f"&cursor={cursor}" if cursor else "")
        resp = h.request("GET", query)
        assert resp.status == 200, resp
        page = resp.json()
        ids |= {j["id"] for j in page["jobs"]}
        cursor = page["next_cursor"]
        if not cursor:
            return ids


def _subscription_probes(stack: Stack, leaks: list[str]) -> int:
    """Webhook subscriptions are per tenant: B neither sees, replaces nor deletes A's (its own instead), A's
    viewer reads A's but changes nothing; appends to ``leaks``; returns the probes."""
    a, b, viewer = stack.http("alpha"), stack.http("beta"), stack.http("alpha-viewer")
    path = "/webhooks/subscription"
    assert a.request("PUT", path, {"url": "https://alpha.example/hooks", "statuses": ["failed"]}).status == 201
    mine = a.request("GET", path).json()
    probes = 0
    for who, h, method, body, want in (("B", b, "GET", None, 404), ("B", b, "DELETE", None, 404),
                                       ("B", b, "PUT", {"url": "https://beta.example/hooks"}, 201),
                                       ("B", b, "GET", None, 200), ("B", b, "DELETE", None, 204),
                                       ("A's viewer", viewer, "GET", None, 200),
                                       ("A's viewer", viewer, "PUT", {"url": "https://x.example/"}, 403),
                                       ("A's viewer", viewer, "DELETE", None, 403)):
        probes += 1
        resp = h.request(method, path, body)
        if resp.status != want or (who == "B" and b"alpha" in resp.body):
            leaks.append(f"{who} {method} {path} -> {resp} (expected {want})")
    if a.request("GET", path).json() != mine:
        leaks.append("A's webhook subscription changed by B or A's viewer")
    a.request("DELETE", path)
    return probes


def _role_and_queue_probes(stack: Stack, jobs: dict[str, str], leaks: list[str]) -> int:
    """Batch idempotency across tenants, queue statistics, and roles; appends to ``leaks``; returns the probes."""
    b, viewer, admin = stack.http("beta"), stack.http("alpha-viewer"), stack.http("admin")
    queue = stack.namespace
    probes = 0

    def expect(who: str, h: Http, method: str, path: str, status: int, body: Any = None) -> Any:
        nonlocal probes
        probes += 1
        resp = h.request(method, path, body)
        if resp.status != status:
            leaks.append(f"{who} {method} {path} -> {resp} (expected {status})")
        return resp

    # B's batch under A's batch Idempotency-Key is B's own: new jobs, never A's
    probes += 1
    theirs = b.request("POST", "/jobs/batch", {"jobs": [{"task": "echo", "params": {"secret": "a-batch"}}]},
                       headers={"Idempotency-Key": "shared-batch"})
    if theirs.status != 202 or theirs.json()["jobs"][0]["id"] == jobs["batched"]:
        leaks.append(f"B's batch Idempotency-Key collided with A's: {theirs}")
    b_job = theirs.json()["jobs"][0]["id"] if theirs.status == 202 else jobs["queued"]
    # queue statistics: counts only, for anyone; never a job id, tenant or params
    for who, h in (("B", b), ("A's viewer", viewer)):
        for path in ("/queues", f"/queues/{queue}"):
            resp = expect(who, h, "GET", path, 200)
            if any(j.encode() in resp.body for j in jobs.values()) or b"alpha" in resp.body or b"a-batch" in resp.body:
                leaks.append(f"{who} GET {path} names A's jobs: {resp}")
    # webhook secrets are per tenant: only an admin rotates, and only its own tenant's (the admin key is 'ops')
    expect("B", b, "POST", "/webhooks/secret/rotate", 403)
    expect("A's viewer", viewer, "POST", "/webhooks/secret/rotate", 403)
    rotated = expect("admin", admin, "POST", "/webhooks/secret/rotate", 200)
    owners = sorted(stack.client().hkeys(f"{queue}:webhook_secrets"))
    if rotated.status == 200 and owners != [b"ops"]:
        leaks.append(f"the admin's rotation touched other tenants' secrets: {owners}")
    # operators and viewers cannot change queues; the queue is untouched
    for who, h in (("B", b), ("A's viewer", viewer)):
        expect(who, h, "POST", f"/queues/{queue}/pause", 403)
        expect(who, h, "POST", f"/queues/{queue}/resume", 403)
        expect(who, h, "PUT", f"/queues/{queue}/cap", 403, {"cap": 1})
    stats = admin.request("GET", f"/queues/{queue}").json()
    if stats["paused"] or stats["cap"] is not None:
        leaks.append(f"a refused queue change took effect: {stats}")
    # A's viewer reads A's jobs but changes nothing, and sees none of B's
    expect("A's viewer", viewer, "GET", f"/jobs/{jobs['queued']}", 200)
    expect("A's viewer", viewer, "POST", "/jobs", 403, {"task": "echo"})
    expect("A's viewer", viewer, "POST", "/jobs/batch", 403, {"jobs": [{"task": "echo"}]})
    expect("A's viewer", viewer, "DELETE", f"/jobs/{jobs['queued']}", 403)
    expect("A's viewer", viewer, "POST", f"/jobs/{jobs['failed']}/retry", 403)
    expect("A's viewer", viewer, "GET", f"/jobs/{b_job}", 404)
    # listing another tenant needs admin
    for who, h, other in (("B", b, "alpha"), ("B", b, "*"), ("A's viewer", viewer, "beta")):
        expect(who, h, "GET", f"/jobs?tenant={other}", 403)
    # the admin is the one who reads across tenants (the control: the probes above could succeed)
    if expect("admin", admin, "GET", f"/jobs/{jobs['queued']}", 200).json().get("tenant") != "alpha":
        leaks.append("the admin read A's job without its tenant")
    listed = {j["id"] for j in expect("admin", admin, "GET", "/jobs?tenant=alpha&limit=200", 200).json()["jobs"]}
    if not set(jobs.values()) <= listed:
        leaks.append("the admin's ?tenant=alpha list misses A's jobs")
    return probes


def _console_and_event_probes(stack: Stack, jobs: dict[str, str], leaks: list[str]) -> int:
    """B through the console (session cookie) and GET /events (key, then cookie): none of A's jobs."""
    from urllib.parse import urlencode

    b = stack.http("beta")
    session = login(b)
    cookie, csrf = session.cookie, session.csrf
    html = {**cookie, "Accept": "text/html"}
    probes = 0

    def check(what: str, resp: Any, status: int | None = None) -> None:
        nonlocal probes
        probes += 1
        if status is not None and resp.status != status:
            leaks.append(f"B {what} -> {resp}")
        if any(j.encode() in resp.body for j in jobs.values()) and b"no job with id" not in resp.body:
            leaks.append(f"B {what} shows A's jobs: {resp}")

    for query in ("", "?tenant=alpha", "?status=failed", "?param=secret&value=a-batch", "?limit=200"):
        check(f"GET /ui/jobs{query}", b.request("GET", f"/ui/jobs{query}", headers=html, auth=False), 200)
    for path in ("/ui/", "/ui/queues", "/ui/workers", "/ui/audit", "/ui/webhooks", "/ui/webhooks?tenant=alpha",
                 "/ui/schedules", "/ui/schedules?tenant=alpha"):
        resp = b.request("GET", path, headers=html, auth=False)
        check(f"GET {path}", resp, 200)
        if b"alpha.example" in resp.body or b"tenant alpha" in resp.body:  # A's subscription, deliveries, schedules
            leaks.append(f"B GET {path} shows A's webhooks or schedules: {resp}")
    check("POST /ui/webhooks/secret/rotate", b.request(
        "POST", "/ui/webhooks/secret/rotate", raw=urlencode({"csrf_token": csrf}).encode(), auth=False,
        headers={**html, "Content-Type": "application/x-www-form-urlencoded"}), 403)  # operator: admin only
    for state, job_id in jobs.items():
        for suffix in ("", "/state", "/params", "/result"):
            check(f"GET /ui/jobs/{job_id}{suffix} ({state})",
                  b.request("GET", f"/ui/jobs/{job_id}{suffix}", headers=cookie, auth=False), 404)
        for action in ("cancel", "retry"):
            check(f"POST /ui/jobs/{job_id}/{action} ({state})", b.request(
                "POST", f"/ui/jobs/{job_id}/{action}", raw=urlencode({"csrf_token": csrf}).encode(), auth=False,
                headers={**cookie, "Content-Type": "application/x-www-form-urlencoded"}), 404)
    form = urlencode([("csrf_token", csrf), ("act", "cancel-selected"), *[("ids", j) for j in jobs.values()]])
    preview = b.request("POST", "/ui/bulk/preview", raw=form.encode(), auth=False,
                        headers={**html, "Content-Type": "application/x-www-form-urlencoded"})
    check("POST /ui/bulk/preview of A's ids", preview, 200)
    if b'id="bulk-count">0<' not in preview.body:
        leaks.append(f"B's bulk preview plans A's jobs: {preview}")
    for what, resp in (
        ("GET /events (key)", b.request("GET", "/events?last_event_id=0-0&max_seconds=1")),
        ("GET /events?tenant=alpha (key)", b.request("GET", "/events?tenant=alpha&last_event_id=0-0&max_seconds=1")),
        ("GET /events (session)", b.request("GET", "/events?last_event_id=0-0&max_seconds=1", headers=cookie,
                                            auth=False)),
    ):
        check(what, resp, 200)
    # GET /audit: a non-admin reads its own tenant's entries only, whatever ?tenant= says
    for what, resp in (("GET /audit (key)", b.request("GET", "/audit?limit=500")),
                       ("GET /audit?tenant=alpha (key)", b.request("GET", "/audit?tenant=alpha&limit=500"))):
        check(what, resp, 200)
    # the controls: A's own audit log names A's cancelled job, and A's own stream carries A's jobs
    if jobs["cancelled"].encode() not in stack.http("alpha").request("GET", "/audit?limit=500").body:
        leaks.append("A's own audit log lacks A's cancel: the /audit probes prove nothing")
    mine = stack.http("alpha").request("GET", "/events?last_event_id=0-0&max_seconds=1")
    if jobs["queued"].encode() not in mine.body:
        leaks.append("A's own event stream lacks A's job: the /events probes prove nothing")
    a_cookie = login(stack.http("alpha")).cookie
    a_hooks = stack.http("alpha").request("GET", "/ui/webhooks", headers={**a_cookie, "Accept": "text/html"},
                                          auth=False)
    if jobs["hooked"].encode() not in a_hooks.body or b"alpha.example/subscribed" not in a_hooks.body:
        leaks.append("A's own webhooks page lacks A's owed delivery or subscription: the probes prove nothing")
    return probes


def _console_action_probes(stack: Stack, jobs: dict[str, str], leaks: list[str]) -> int:
    """The console's actions and remaining pages: B can not see, run or follow A's bulk action; B's and A's
    viewer's queue controls and task runs are refused; the task pages name none of A's jobs; B's logout
    ends B's session only. Appends to ``leaks``; returns the probes."""
    import re
    from urllib.parse import urlencode

    a, b, viewer = stack.http("alpha"), stack.http("beta"), stack.http("alpha-viewer")
    mine, theirs, viewers = login(a), login(b), login(viewer)
    queue = stack.namespace
    probes = 0

    def post(who: str, h: Http, s: Any, path: str, fields: list[tuple[str, str]], status: int) -> Any:
        nonlocal probes
        probes += 1
        resp = h.request("POST", path, raw=urlencode([("csrf_token", s.csrf), *fields]).encode(), auth=False,
                         headers=s.headers(form=True))
        if resp.status != status:
            leaks.append(f"{who} POST {path} -> {resp} (expected {status})")
        return resp

    # A previews a bulk cancel of A's queued job (the plan is A's): B neither sees, follows nor runs it
    planned = post("A", a, mine, "/ui/bulk/preview", [("act", "cancel-selected"), ("ids", jobs["queued"])], 200)
    probes -= 1  # A's own request: the setup, not a probe
    found = re.search(rb'/ui/bulk/([^/"]+)/run', planned.body)
    assert found, planned
    op = found.group(1).decode()
    plan_before = a.request("GET", f"/ui/bulk/{op}/status", headers=mine.cookie, auth=False).json()
    for path in (f"/ui/bulk/{op}", f"/ui/bulk/{op}/status"):
        probes += 1
        resp = b.request("GET", path, headers=theirs.headers(), auth=False)
        if resp.status != 404 or jobs["queued"].encode() in resp.body:
            leaks.append(f"B GET {path} (A's bulk action) -> {resp}")
    post("B", b, theirs, f"/ui/bulk/{op}/run", [], 404)
    if a.request("GET", f"/ui/bulk/{op}/status", headers=mine.cookie, auth=False).json() != plan_before:
        leaks.append("A's bulk action changed by B")
    # roles through the console: only an admin controls queues; a viewer runs no task
    for action in ("pause", "resume", "cap"):
        post("B", b, theirs, f"/ui/queues/{queue}/{action}", [("cap", "1")], 403)
        post("A's viewer", viewer, viewers, f"/ui/queues/{queue}/{action}", [("cap", "1")], 403)
    post("A's viewer", viewer, viewers, "/ui/tasks/echo/run", [("params_json", "{}")], 403)
    stats = stack.http("admin").request("GET", f"/queues/{queue}").json()
    if stats["paused"] or stats["cap"] is not None:
        leaks.append(f"a refused console queue change took effect: {stats}")
    # the task catalogue is shared; its pages name no tenant's jobs
    for what, resp in (("GET /tasks/echo", b.request("GET", "/tasks/echo")),
                       ("GET /ui/tasks", b.request("GET", "/ui/tasks", headers=theirs.headers(), auth=False))):
        probes += 1
        if resp.status != 200 or any(j.encode() in resp.body for j in jobs.values()) or b"alpha" in resp.body:
            leaks.append(f"B {what} -> {resp}")
    # B's logout ends B's session, not A's
    post("B", b, theirs, "/ui/logout", [], 303)
    probes += 1
    page = a.request("GET", "/ui/jobs", headers=mine.headers(), auth=False)
    if page.status != 200 or jobs["queued"].encode() not in page.body:
        leaks.append(f"A's console session did not survive B's logout: {page}")
    return probes


def _mixed_entry_probes(stack: Stack, leaks: list[str]) -> int:
    """One script call that changes several tenants' jobs writes ONE stream entry holding all their events
    (issue 16: one XADD per call): GET /events filters per event, so B's stream shows B's event from that
    entry and none of A's, and A's the reverse, also when resuming from inside the entry."""
    # a queue no stack worker consumes, claimed by this checker: one FINISH_CLAIM call, two tenants' jobs
    store = JobStore.from_settings(dataclasses.replace(stack.settings(), queue="iso-mixed", queues=()))
    start = store.last_event_id()
    mine = {t: store.enqueue("echo", {}, owner=t)[0].id for t in ("alpha", "beta")}
    assert [j.id for j in store.claim("isolation-probe", 2)] == [mine["alpha"], mine["beta"]]
    probes = 0
    for me, other in (("alpha", "beta"), ("beta", "alpha")):
        h = stack.http(me)
        for query in (f"last_event_id={start}", f"tenant={other}&last_event_id={start}"):
            probes += 1
            frames = _sse_frames(h.request("GET", f"/events?{query}&max_seconds=1").body)
            running = [(i, d["job"]) for i, d in frames if d.get("status") == "running" and d["job"] in mine.values()]
            if any(d.get("job") == mine[other] or d.get("tenant") == other for _, d in frames):
                leaks.append(f"{me}'s GET /events?{query} shows {other}'s event of a shared stream entry")
            if [j for _, j in running] != [mine[me]] or ":" not in running[0][0]:  # control: the entry was read
                leaks.append(f"{me}'s GET /events?{query} lacks its own event of the shared entry: {frames}")
    # resumed from A's event inside the entry: B's stream (its own key) has B's event, never A's
    entry = next(i for i, d in _sse_frames(stack.http("alpha").request(
        "GET", f"/events?last_event_id={start}&max_seconds=1").body)
        if d.get("job") == mine["alpha"] and d.get("status") == "running")
    probes += 1
    frames = _sse_frames(stack.http("beta").request("GET", f"/events?last_event_id={entry}&max_seconds=1").body)
    if ":" not in entry or [d.get("job") for _, d in frames if d.get("job") in mine.values()] != [mine["beta"]]:
        leaks.append(f"B's stream resumed inside a shared entry: {frames}")
    return probes


def _sse_frames(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(id, data) of each ``event: job`` frame."""
    out = []
    for block in body.decode().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if lines.get("event") == "job":
            out.append((lines.get("id", ""), json.loads(lines["data"])))
    return out


#: Routes that hold no tenant's data, so there is nothing for another tenant to probe.
ISOLATION_EXEMPT = {
    ("GET", "/healthz"): "ops: liveness, no data", ("GET", "/readyz"): "ops: readiness, no data",
    ("GET", "/metrics"): "ops: counters by queue and task, off the public Ingress (tests/deploy); no job id",
    ("GET", "/openapi.json"): "the API's description", ("GET", "/docs"): "the docs page",
    ("GET", "/docs/init.js"): "the docs page's script", ("GET", "/docs/assets/<name>"): "the docs page's assets",
    ("GET", "/static/<path:filename>"): "Flask's static files (none)",
    ("GET", "/ui/static/<path:filename>"): "the console's script and stylesheet",
    ("GET", "/ui/login"): "the login form, before any tenant is known",
    ("POST", "/ui/login"): "a login is as the key's own tenant (a wrong key: tests/console)",
}


def _recording(monkeypatch: pytest.MonkeyPatch, skip_keys: set[str]) -> list[tuple[str, str]]:
    """Record (method, path) of every request sent with any key but ``skip_keys`` (A's own requests and the
    admin's controls are not probes), console requests included (their Http keeps its key but sends the
    session)."""
    sent: list[tuple[str, str]] = []
    original = Http.request

    def request(self: Http, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if self.api_key not in skip_keys:
            sent.append((method, path))
        return original(self, method, path, *args, **kwargs)

    monkeypatch.setattr(Http, "request", request)
    return sent


def test_tenant_isolation(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The failed-key rate limit (tested in tests/api/test_auth_limit.py) is raised here: every wrong-key probe
    # below must reach the authentication itself and get its 401, not the limiter's 429.
    # JOBS_WEBHOOKS=off: no dispatcher, so A's webhook event below stays owed (listed on A's console page)
    stack = Stack(workdir, workers=1, concurrency=1,
                  extra_env={"JOBS_AUTH_FAILURE_LIMIT": "100000", "JOBS_WEBHOOKS": "off"}).start()
    probed = _recording(monkeypatch, {stack.keys["alpha"], stack.keys["admin"]})
    try:
        a, b = stack.http("alpha"), stack.http("beta")
        jobs = {
            "succeeded": a.submit("echo", {"x": 1}).json()["id"],
            "failed": a.submit("fail", {"message": "boom"}, max_attempts=1).json()["id"],
        }
        assert _wait(a, jobs["succeeded"], TERMINAL)["status"] == "succeeded"
        assert _wait(a, jobs["failed"], TERMINAL)["status"] == "failed"
        jobs["running"] = a.submit("sleep", {"seconds": 30}).json()["id"]
        assert _wait(a, jobs["running"], {"running"})["status"] == "running"
        jobs["queued"] = a.submit("sleep", {"seconds": 1}).json()["id"]
        jobs["cancelled"] = a.submit("sleep", {"seconds": 1}).json()["id"]
        assert a.request("DELETE", f"/jobs/{jobs['cancelled']}").status == 200
        idem = a.request("POST", "/jobs", {"task": "echo", "params": {"a": 1}}, headers={"Idempotency-Key": "shared"})
        assert idem.status == 202
        jobs["idempotent"] = idem.json()["id"]
        batch = a.request("POST", "/jobs/batch", {"jobs": [{"task": "echo", "params": {"secret": "a-batch"}}]},
                          headers={"Idempotency-Key": "shared-batch"})
        assert batch.status == 202
        jobs["batched"] = batch.json()["jobs"][0]["id"]
        # a webhook event still owed to A's callback (cancelled while delayed: its event is in the outbox)
        jobs["hooked"] = a.submit("echo", {}, delay=600, callback_url="https://alpha.example/hooks").json()["id"]
        assert a.request("DELETE", f"/jobs/{jobs['hooked']}").status == 200
        before = {state: a.request("GET", f"/jobs/{job_id}").json() for state, job_id in jobs.items()}

        probes = 0
        leaks: list[str] = []
        for state, job_id in jobs.items():
            for method, path in (("GET", f"/jobs/{job_id}"), ("GET", f"/jobs/{job_id}?wait=1"),
                                 ("GET", f"/jobs/{job_id}/result"), ("DELETE", f"/jobs/{job_id}"),
                                 ("POST", f"/jobs/{job_id}/retry")):
                resp = b.request(method, path)
                probes += 1
                if resp.status != 404 or resp.json().get("type") != "/problems/job-not-found":
                    leaks.append(f"B {method} {path} ({state}) -> {resp}")
                if job_id.encode() in resp.body and b"no job with id" not in resp.body:
                    leaks.append(f"B {method} {path} ({state}) body mentions the job: {resp}")
        for status in STATUS_FILTERS:
            for task in ("", "echo", "sleep", "fail"):
                probes += 1
                seen = _listed(b, status, task) & set(jobs.values())
                if seen:
                    leaks.append(f"B GET /jobs?status={status}&task={task} lists A's jobs {seen}")
        assert set(jobs.values()) <= _listed(a, "")
        # schedules: B can not see, read, pause, resume or delete A's; the same name is B's own
        sched = {"task": "echo", "cron": "0 3 * * *", "params": {"tenant": "alpha"}}
        assert a.request("PUT", "/schedules/nightly", sched).status == 201
        a_schedule = a.request("GET", "/schedules/nightly").json()
        for method, path in (("GET", "/schedules/nightly"), ("POST", "/schedules/nightly/pause"),
                             ("POST", "/schedules/nightly/resume"), ("DELETE", "/schedules/nightly")):
            resp = b.request(method, path)
            probes += 1
            if resp.status != 404 or resp.json().get("type") != "/problems/schedule-not-found":
                leaks.append(f"B {method} {path} -> {resp}")
        probes += 2
        if b.request("GET", "/schedules").json()["schedules"]:
            leaks.append("B lists A's schedules")
        mine = b.request("PUT", "/schedules/nightly", {**sched, "params": {"tenant": "beta"}})
        if mine.status != 201:
            leaks.append(f"B's schedule of the same name is not B's own: {mine}")
        if a.request("GET", "/schedules/nightly").json() != a_schedule:
            leaks.append("A's schedule changed by B")
        # workflows: B can not read or cancel A's, nor make its jobs wait on A's jobs
        wf = a.request("POST", "/workflows", {"nodes": [{"name": "x", "task": "sleep", "params": {"seconds": 30}},
                                                        {"name": "y", "task": "echo", "depends_on": ["x"]}]})
        assert wf.status == 201, wf
        wf_id = wf.json()["id"]
        for method in ("GET", "DELETE"):
            resp = b.request(method, f"/workflows/{wf_id}")
            probes += 1
            if resp.status != 404 or resp.json().get("type") != "/problems/workflow-not-found":
                leaks.append(f"B {method} /workflows/{wf_id} -> {resp}")
        for body in ({"task": "echo", "depends_on": [jobs["queued"]]},
                     {"nodes": [{"name": "z", "task": "echo", "depends_on": [{"job": jobs["succeeded"]}]}]}):
            resp = b.request("POST", "/jobs" if "task" in body else "/workflows", body)
            probes += 1
            if resp.status != 422:
                leaks.append(f"B depended on A's job: {resp}")
        if a.request("GET", f"/workflows/{wf_id}").json()["status"] != "running":
            leaks.append("A's workflow changed by B")
        a.request("DELETE", f"/workflows/{wf_id}")
        probes += _subscription_probes(stack, leaks)
        # the same Idempotency-Key from B is B's own key space: a new job, not A's (and no 422 telling B it exists)
        theirs = b.request("POST", "/jobs", {"task": "echo", "params": {"b": 2}}, headers={"Idempotency-Key": "shared"})
        probes += 1
        if theirs.status != 202 or theirs.json()["id"] == jobs["idempotent"]:
            leaks.append(f"B's Idempotency-Key collided with A's: {theirs}")
        # a held submission (Prefer: wait, answered from the API thread's reply channel) with A's batch key:
        # B's own job comes back (finished or not), never A's job nor its result
        held = b.request("POST", "/jobs", {"task": "echo", "params": {"b": 3}},
                         headers={"Idempotency-Key": "shared-batch", "Prefer": "wait=5"})
        probes += 1
        if held.status not in (200, 202) or held.json()["id"] in jobs.values() or b"a-batch" in held.body \
                or held.json().get("tenant") != "beta":
            leaks.append(f"B's held submission saw A's job: {held}")
        probes += _role_and_queue_probes(stack, jobs, leaks)
        a.close()  # idle while B's held submission waited: gunicorn may have closed its keep-alive; reconnect
        assert a.request("PUT", "/webhooks/subscription", {"url": "https://alpha.example/subscribed"}).status == 201
        probes += _console_and_event_probes(stack, jobs, leaks)
        probes += _console_action_probes(stack, jobs, leaks)
        probes += _mixed_entry_probes(stack, leaks)
        a.close()  # idle for the streams' seconds: gunicorn closed its keep-alive connection; reconnect
        # unauthenticated and wrong keys: 401 everywhere, and the near-miss key is not logged either
        queue = stack.namespace
        near_miss = stack.keys["alpha"][:-1] + ("x" if stack.keys["alpha"][-1] != "x" else "y")
        for key in (None, near_miss):
            h = Http("127.0.0.1", stack.api_port, key)
            for method, path in (("GET", f"/jobs/{jobs['queued']}"), ("GET", "/jobs"),
                                 ("DELETE", f"/jobs/{jobs['queued']}"), ("GET", f"/jobs/{jobs['succeeded']}/result"),
                                 ("POST", f"/jobs/{jobs['failed']}/retry"), ("POST", "/jobs"), ("GET", "/tasks"),
                                 ("POST", "/jobs/batch"), ("GET", "/queues"), ("GET", f"/queues/{queue}"),
                                 ("POST", f"/queues/{queue}/pause"), ("POST", f"/queues/{queue}/resume"),
                                 ("PUT", f"/queues/{queue}/cap"),
                                 ("GET", "/schedules"), ("GET", "/schedules/nightly"), ("PUT", "/schedules/nightly"),
                                 ("DELETE", "/schedules/nightly"), ("POST", "/schedules/nightly/pause"),
                                 ("GET", "/tasks/echo"), ("GET", "/audit"), ("GET", "/events"),
                                 ("GET", "/webhooks/subscription"), ("PUT", "/webhooks/subscription"),
                                 ("DELETE", "/webhooks/subscription")):
                probes += 1
                resp = h.request(method, path)
                if resp.status != 401:
                    leaks.append(f"{'no key' if key is None else 'wrong key'} {method} {path} -> {resp}")

        after = {state: a.request("GET", f"/jobs/{job_id}").json() for state, job_id in jobs.items()}
        changed = [s for s in jobs if {k: v for k, v in before[s].items() if k not in ("progress", "message")}
                   != {k: v for k, v in after[s].items() if k not in ("progress", "message")} and s != "queued"]
        logged = stack.leaked_secrets() + [
            f"{name}: near-miss key" for name, text in stack.logs().items() if near_miss in text
        ]
        report.record(report.Row(
            "tenant isolation", len(jobs) + 1, None, 0, 0, None, None, "none" if not leaks else f"{len(leaks)} leaks",
            figures={"cross-tenant probes": probes, "cross-tenant leaks": len(leaks),
                     "A's jobs changed by B": len(changed), "log lines with a secret": len(logged)},
        ))
        assert not leaks, "\n".join(leaks)
        unprobed = routes.missing(probed, exempt=ISOLATION_EXEMPT)
        assert not unprobed, f"routes no other tenant, smaller role or missing key probed (add probes): {unprobed}"
        assert not changed, changed
        assert not logged, logged
    finally:
        stack.stop()
