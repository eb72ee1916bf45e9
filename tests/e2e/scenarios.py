"""End-to-end scenarios, written once and run against every stack.

A :class:`Stack` is a running Jobs API deployment seen from outside: a base URL, an API key, and the
chaos it can inflict on itself. The local process stack, the local containers and the kind cluster
each subclass it; a capability a stack lacks skips the scenario that needs it (with the reason), so
the same code proves the same behaviour wherever it can run.

Scenarios only use HTTP (``api_client.Api``) plus the stack's capability methods.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from e2e.api_client import TERMINAL, Api


class Stack:
    """A running deployment under test. Subclasses override the capabilities they have."""

    #: Shown in skip reasons and messages.
    name = "stack"
    #: Longest time a job held by a killed worker may take to run again (lease + reaper + slack).
    recovery_seconds = 30.0
    #: Parallel job slots across the workers normally running (sizes the burst deadline).
    slots = 2
    #: Jobs in the burst scenario.
    burst_size = 12
    #: Requests pass a reverse proxy (an ingress) that may answer 502/503/504 itself while the API
    #: pod is unready, so such answers need not be the API's problem+json.
    proxied = False

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.api = Api(base_url, api_key)

    def _unsupported(self, what: str) -> None:
        pytest.skip(f"{self.name} stack cannot {what}")

    def kill_worker_running(self, job: dict[str, Any]) -> None:
        """Kill -9 the worker (process, container or pod) running ``job``; a replacement must come up."""
        self._unsupported("kill a worker")

    def restart_redis(self, while_down: Callable[[], None] | None = None) -> None:
        """Crash Redis (no shutdown save), call ``while_down``, start it again on the same data."""
        self._unsupported("restart Redis")

    def logs(self) -> str:
        """Recent component logs, attached to failures."""
        return ""


def _job_path_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------- scenarios
def submit_status_result_cancel(stack: Stack) -> None:
    """The client's whole life cycle: submit, status, long-poll, result, cancel, and the 4xx answers."""
    api = stack.api
    assert api.request("GET", "/healthz", auth=False).status == 200
    ready = api.request("GET", "/readyz", auth=False)
    assert ready.status == 200, f"/readyz: {ready}"
    tasks = api.request("GET", "/tasks")
    assert tasks.status == 200, f"/tasks: {tasks}"
    assert {"echo", "sleep"} <= {t["name"] for t in tasks.json()["tasks"]}
    if stack.api_key:
        anon = api.request("GET", "/tasks", auth=False)
        assert anon.status == 401, f"/tasks without a key: {anon}"

    # submit -> 202 + Location + the job; long-poll to succeeded; result is the params (JSON)
    params = {"greeting": "hello", "n": [1, 2, 3], "nested": {"ok": True}, "text": "żółw ✓"}
    r = api.submit("echo", params)
    assert r.status == 202, f"POST /jobs: {r}"
    job = r.json()
    assert _job_path_id(r.headers["location"]) == job["id"]
    assert job["task"] == "echo" and job["params"] == params
    assert job["status"] in {"queued", "running", "succeeded"}
    done = api.wait_status(job["id"], TERMINAL, 60)
    assert done["status"] == "succeeded", done
    assert done["finished_at"] and done["started_at"] and done["created_at"]
    res = api.request("GET", f"/jobs/{job['id']}/result")
    assert res.status == 200 and res.content_type == "application/json", str(res)
    assert res.json() == params

    # a running job: its result is 409, DELETE -> 202, then it ends cancelled; DELETE again -> 409
    slow = api.submit_ok("sleep", {"seconds": 30})
    running = api.wait_status(slow["id"], {"running"}, 60)
    assert running["started_at"]
    early = api.request("GET", f"/jobs/{slow['id']}/result")
    assert early.status == 409, f"result of a running job: {early}"
    cancel = api.request("DELETE", f"/jobs/{slow['id']}")
    assert cancel.status == 202, f"DELETE running job: {cancel}"
    ended = api.wait_status(slow["id"], TERMINAL, 30)
    assert ended["status"] == "cancelled", ended
    again = api.request("DELETE", f"/jobs/{slow['id']}")
    assert again.status == 409, f"DELETE cancelled job: {again}"

    # a queued (delayed) job is cancelled at once -> 200
    later = api.submit_ok("echo", {"never": "runs"}, delay=600)
    assert later["status"] == "queued", later
    cancel = api.request("DELETE", f"/jobs/{later['id']}")
    assert cancel.status == 200, f"DELETE queued job: {cancel}"
    assert api.job(later["id"])["status"] == "cancelled"

    # unknown ids and bad input are precise 4xx problems
    missing = api.request("GET", f"/jobs/{uuid.uuid4()}")
    assert missing.status == 404 and missing.content_type == "application/problem+json", str(missing)
    bad = api.submit("no-such-task", {})
    assert bad.status == 422 and bad.content_type == "application/problem+json", str(bad)


def worker_killed_mid_job(stack: Stack, seconds: float = 4.0) -> None:
    """SIGKILL the worker running a job: the job is recovered and still succeeds."""
    api = stack.api
    job = api.submit_ok("sleep", {"seconds": seconds}, max_attempts=3)
    running = api.wait_status(job["id"], {"running"}, 60)
    time.sleep(min(1.0, seconds / 4))  # well inside the job, after the first progress write
    stack.kill_worker_running(running)
    done = api.wait_status(job["id"], TERMINAL, stack.recovery_seconds + seconds + 30)
    assert done["status"] == "succeeded", f"{done}\n{stack.logs()}"
    assert done["attempts"] >= 2 or done["worker"] != running["worker"], (
        f"job finished without being run again after its worker was killed: {done}"
    )
    assert api.request("GET", f"/jobs/{job['id']}/result").json() == {"slept": seconds}


def burst_of_slow_jobs(
    stack: Stack,
    seconds: float = 1.0,
    during: Callable[[list[str]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Submit ``stack.burst_size`` slow jobs at once; every one succeeds, once each, with its result.

    ``during`` (e.g. a scale-up watch) runs after the submissions and before the final wait.
    """
    api = stack.api
    ids = [api.submit_ok("sleep", {"seconds": seconds})["id"] for _ in range(stack.burst_size)]
    if during is not None:
        during(ids)
    budget = stack.burst_size * seconds / max(1, stack.slots) + stack.recovery_seconds + 60
    final = api.wait_all(ids, budget)
    bad = {jid: j for jid, j in final.items() if j["status"] != "succeeded"}
    assert not bad, f"{len(bad)} of {len(ids)} burst jobs did not succeed: {list(bad.values())[:3]}"
    assert all(j["attempts"] == 1 for j in final.values()), "a burst job ran more than once without chaos"
    return final


def redis_restart_loses_nothing(stack: Stack, jobs: int = 24) -> None:
    """Crash Redis (AOF appendfsync always) mid-run: every job the API accepted (202) still succeeds.

    While Redis is down the API answers 503 (never 500) and /readyz fails; API and workers reconnect
    by themselves.
    """
    api = stack.api
    ledger = [api.submit_ok("sleep", {"seconds": 0.3})["id"] for _ in range(jobs)]
    api.wait_status(ledger[0], {"running", "succeeded"}, 60)
    outage: dict[str, Any] = {}

    def while_down() -> None:
        time.sleep(0.5)
        ready = api.request("GET", "/readyz", auth=False, timeout=20)
        post = api.submit("echo", {"during": "outage"})
        outage.update(ready=ready, post=post)
        if post.status == 202:  # accepted before the crash was noticed: it joins the ledger
            ledger.append(post.json()["id"])

    stack.restart_redis(while_down)
    ready, post = outage["ready"], outage["post"]
    assert ready.status == 503, f"/readyz with Redis down: {ready}"
    allowed = {202, 503} | ({502, 504} if stack.proxied else set())
    assert post.status in allowed, f"POST /jobs with Redis down must be 503, never 500: {post}"
    if post.status == 503 and not stack.proxied:
        assert post.content_type == "application/problem+json" and "retry-after" in post.headers, str(post)
    # the stack reconnects by itself: new submissions work again
    deadline = time.monotonic() + 30 + stack.recovery_seconds
    while True:
        try:
            r = api.submit("sleep", {"seconds": 0.1})
        except OSError as e:  # a proxy may reset connections while its backend comes back
            if time.monotonic() > deadline:
                raise
            print(f"retrying submit after {e!r}")
            time.sleep(0.5)
            continue
        if r.status == 202:
            ledger.append(r.json()["id"])
            break
        assert r.status in allowed - {202} and time.monotonic() < deadline, (
            f"API did not recover after Redis restart: {r}"
        )
        time.sleep(0.5)
    ledger += [api.submit_ok("sleep", {"seconds": 0.1})["id"] for _ in range(4)]
    final = api.wait_all(ledger, stack.recovery_seconds + jobs * 0.3 + 90)
    lost = {jid: j for jid, j in final.items() if j["status"] != "succeeded"}
    assert not lost, f"{len(lost)} accepted jobs did not succeed after a Redis restart: {list(lost.values())[:3]}"


ALL: dict[str, Callable[[Stack], Any]] = {
    "submit_status_result_cancel": submit_status_result_cancel,
    "worker_killed_mid_job": worker_killed_mid_job,
    "burst_of_slow_jobs": burst_of_slow_jobs,
    "redis_restart_loses_nothing": redis_restart_loses_nothing,
}
