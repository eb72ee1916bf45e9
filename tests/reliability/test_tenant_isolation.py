"""Scenario 6, tenant isolation: tenant B can not see, list, read the result of, cancel or retry tenant A's
jobs (404 on every endpoint, A's jobs unchanged), and no API key or Redis password appears in any log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reliability import report
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


def test_tenant_isolation(workdir: Path) -> None:
    stack = Stack(workdir, workers=1, concurrency=1).start()
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
        # the same Idempotency-Key from B is B's own key space: a new job, not A's (and no 422 telling B it exists)
        theirs = b.request("POST", "/jobs", {"task": "echo", "params": {"b": 2}}, headers={"Idempotency-Key": "shared"})
        probes += 1
        if theirs.status != 202 or theirs.json()["id"] == jobs["idempotent"]:
            leaks.append(f"B's Idempotency-Key collided with A's: {theirs}")
        # unauthenticated and wrong keys: 401 everywhere, and the near-miss key is not logged either
        near_miss = stack.keys["alpha"][:-1] + ("x" if stack.keys["alpha"][-1] != "x" else "y")
        for key in (None, near_miss):
            h = Http("127.0.0.1", stack.api_port, key)
            for method, path in (("GET", f"/jobs/{jobs['queued']}"), ("GET", "/jobs"),
                                 ("DELETE", f"/jobs/{jobs['queued']}"), ("GET", f"/jobs/{jobs['succeeded']}/result"),
                                 ("POST", f"/jobs/{jobs['failed']}/retry"), ("POST", "/jobs"), ("GET", "/tasks"),
                                 ("GET", "/schedules"), ("GET", "/schedules/nightly"), ("PUT", "/schedules/nightly"),
                                 ("DELETE", "/schedules/nightly"), ("POST", "/schedules/nightly/pause")):
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
        assert not changed, changed
        assert not logged, logged
    finally:
        stack.stop()
