"""Scenario 8, schedules and workflows through crashes (a ledger of every tick and every release).

Schedules: every-second schedules fired by the tickers of the gunicorn processes while a gunicorn worker
and a jobs-worker are SIGKILLed and redis-server is SIGKILLed and restarted (``appendfsync always``).
Every tick from the first to the last is enqueued exactly once: no gap (the outage is caught up, policy
``all``), no tick twice (the schedule's fired counter equals the distinct ticks, one queue entry each),
and every tick's job ran to the end.

Workflows: fan-ins with a failing branch while workers are SIGKILLed and Redis crashes. Every join is
released exactly once after all its members succeeded (deps_left exactly 0, it read all their results,
ran once per attempt), every transitive dependent of the failed member is cancelled, the ``ignore``
dependent ran, nothing is left waiting and the pending counters are back at zero.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from reliability import invariants, report
from reliability.http import TERMINAL
from reliability.stack import Stack

SCHEDULES = 3
PHASE = 20.0 if report.FULL else 5.0  # seconds of ticking before and after the Redis crash
DOWNTIME = 6.0 if report.FULL else 3.0
WORKFLOWS = 30 if report.FULL else 6
MEMBERS = 10
KILLS = 6 if report.FULL else 2


def _wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # Redis restarting, the API reconnecting: ask again
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _call(stack: Stack, method: str, path: str, body: object = None):  # type: ignore[no-untyped-def]
    """One API call on a fresh connection, repeated while a killed process or Redis is coming back."""
    def attempt():  # type: ignore[no-untyped-def]
        resp = stack.http("alpha").request(method, path, body)
        return resp if resp.status < 500 else None

    return _wait(attempt, 60, f"{method} {path}")


def _crash_redis(stack: Stack) -> float:
    stack.redis.kill()
    time.sleep(DOWNTIME)
    stack.redis.restart()
    return time.monotonic()


def test_schedule_ticks_exactly_once_through_crashes(workdir: Path) -> None:
    stack = Stack(workdir, workers=2, concurrency=2, appendfsync="always", web_concurrency=2,
                  extra_env={"JOBS_SCHEDULE_TICK_SECONDS": "0.2"}).start()
    try:
        h = stack.http("alpha")
        names = [f"every-second-{i}" for i in range(SCHEDULES)]
        for name in names:
            resp = h.request("PUT", f"/schedules/{name}", {"task": "echo", "cron": "* * * * * *", "catchup": "all",
                                                           "params": {"schedule": name}})
            assert resp.status == 201, resp
        time.sleep(PHASE / 2)
        victim = stack.api_worker_pids()[0]
        import os
        import signal

        os.kill(victim, signal.SIGKILL)  # its ticker thread dies with it; gunicorn starts a new one
        worker = stack.random_worker()
        if worker is not None:
            stack.kill_worker(worker)
            stack.start_worker(worker)
        time.sleep(PHASE / 2)
        back = _crash_redis(stack)
        client = stack.client()
        first_after = _wait(lambda: _latest_tick_created_after(client, stack.namespace, back), 60,
                            "a tick enqueued after Redis came back")
        recovery = first_after - back
        time.sleep(PHASE)
        for name in names:
            assert _call(stack, "POST", f"/schedules/{name}/pause").status == 200
        ticks, runs = _scheduled(client, stack.namespace)
        _wait(lambda: all(_status(client, stack.namespace, j) in TERMINAL for j in runs), 120, "every tick's job")
        problems = invariants.settle(client, stack.namespace, stack.namespace)
        gaps = dups = 0
        per: dict[str, int] = {}
        for name in names:
            got = sorted(ticks.get(name, []))
            per[name] = len(got)
            gaps += (got[-1] - got[0]) // 1000 + 1 - len(set(got)) if got else 1
            fired = int(client.hget(f"{stack.namespace}:schedule:alpha:{name}", "fired") or 0)
            dups += fired - len(set(got))
        done = sum(1 for j in runs if _status(client, stack.namespace, j) == "succeeded")
        stuck = sum(1 for j in runs if _status(client, stack.namespace, j) not in TERMINAL)
        report.record(report.Row(
            "schedules: ticks through crashes", len(runs), done, gaps, stuck, dups, recovery, "none",
            figures={"schedules": SCHEDULES, "ticks per schedule": per, "redis downtime s": DOWNTIME,
                     "gunicorn workers killed": 1, "jobs-workers killed": 1,
                     "first tick enqueued after Redis back, s": round(recovery, 2),
                     "ticks missing": gaps, "ticks enqueued twice": dups},
        ))
        assert all(n >= 2 * PHASE for n in per.values()), per  # it kept ticking before and after the crash
        assert gaps == 0 and dups == 0 and stuck == 0 and done == len(runs)
        assert not problems, problems
    finally:
        stack.stop()


def _scheduled(client, prefix: str) -> tuple[dict[str, list[int]], list[str]]:  # type: ignore[no-untyped-def]
    ids = [m.decode() for m in client.zrange(f"{prefix}:index:owner:alpha", 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"{prefix}:job:{job_id}", "schedule", "tick")
    ticks: dict[str, list[int]] = {}
    runs = []
    for job_id, (sched, tick) in zip(ids, pipe.execute(), strict=True):
        if sched:
            ticks.setdefault(sched.decode(), []).append(int(tick))
            runs.append(job_id)
    return ticks, runs


def _latest_tick_created_after(client, prefix: str, since: float) -> float | None:  # type: ignore[no-untyped-def]
    now_ms = client.time()
    redis_now = now_ms[0] * 1000 + now_ms[1] // 1000
    ids = [m.decode() for m in client.zrange(f"{prefix}:index", -5, -1)]
    for job_id in ids:
        created = client.hget(f"{prefix}:job:{job_id}", "created_at")
        if created and redis_now - int(created) < (time.monotonic() - since) * 1000:
            return time.monotonic() - (redis_now - int(created)) / 1000
    return None


def _status(client, prefix: str, job_id: str) -> str:  # type: ignore[no-untyped-def]
    raw = client.hget(f"{prefix}:job:{job_id}", "status")
    return raw.decode() if raw else "missing"


def _workflow(i: int) -> dict[str, object]:
    members = [{"name": f"m{j}", "task": "number", "params": {"n": j, "seconds": 0.3}, "max_attempts": 20}
               for j in range(MEMBERS)]
    return {"nodes": [
        *members,
        {"name": "join", "task": "gather", "params": {"key": f"join-runs-{i}"}, "max_attempts": 20,
         "depends_on": [m["name"] for m in members]},
        {"name": "tail", "task": "echo", "depends_on": ["join"], "max_attempts": 20},
        {"name": "bad", "task": "fail", "params": {"message": "boom"}, "max_attempts": 1},
        {"name": "doomed", "task": "echo", "depends_on": ["bad", "m0"]},
        {"name": "after-doomed", "task": "echo", "depends_on": ["doomed"]},
        {"name": "tolerant", "task": "echo", "depends_on": [{"node": "bad", "on_failure": "ignore"}],
         "max_attempts": 20},
    ]}


def test_workflows_release_exactly_once_through_crashes(workdir: Path) -> None:
    stack = Stack(workdir, workers=3, concurrency=2, appendfsync="always").start()
    try:
        h = stack.http("alpha")
        wfs = []
        for i in range(WORKFLOWS):
            resp = h.request("POST", "/workflows", _workflow(i))
            assert resp.status == 201, resp
            wfs.append(resp.json())
        kills = 0
        while kills < KILLS:
            time.sleep(1.0)
            worker = stack.random_worker()
            if worker is None:
                continue
            stack.kill_worker(worker)
            stack.start_worker(worker)
            kills += 1
            if kills == KILLS // 2:
                _crash_redis(stack)
        client = stack.client()

        def finished() -> bool:
            return all(_call(stack, "GET", f"/workflows/{wf['id']}").json()["status"] != "running" for wf in wfs)

        _wait(finished, 300, "every workflow to end")
        problems = invariants.settle(client, stack.namespace, stack.namespace)
        wrong: list[str] = []
        joins = releases = 0
        for i, wf in enumerate(wfs):
            body = _call(stack, "GET", f"/workflows/{wf['id']}").json()
            st = {n["name"]: n["status"] for n in body["nodes"]}
            ids = {n["name"]: n["job_id"] for n in body["nodes"]}
            want = {**{f"m{j}": "succeeded" for j in range(MEMBERS)}, "join": "succeeded", "tail": "succeeded",
                    "bad": "failed", "doomed": "cancelled", "after-doomed": "cancelled", "tolerant": "succeeded"}
            if st != want or body["status"] != "failed":
                wrong.append(f"workflow {i}: {body['status']} {st}")
            join = ids["join"]
            left = client.hget(f"{stack.namespace}:job:{join}", "deps_left")
            attempts = int(client.hget(f"{stack.namespace}:job:{join}", "attempts") or 0)
            runs = client.llen(f"join-runs-{i}")
            result = orjson.loads(client.get(f"{stack.namespace}:result:{join}") or b"null")
            joins += 1
            releases += 1 if left == b"0" else 0
            if left != b"0" or runs != attempts or result != {"count": MEMBERS, "sum": sum(range(MEMBERS))}:
                wrong.append(f"join {i}: deps_left {left!r}, {runs} runs for {attempts} attempts, result {result}")
            error = orjson.loads(client.hget(f"{stack.namespace}:job:{ids['after-doomed']}", "error") or b"{}")
            if error.get("type") != "DependencyFailed":
                wrong.append(f"after-doomed {i}: {error}")
        waiting = [k for k in client.scan_iter(f"{stack.namespace}:job:*")
                   if client.hget(k, "status") == b"waiting"]
        pending = int(client.hget(f"{stack.namespace}:pending", "alpha") or 0)
        nodes = WORKFLOWS * (MEMBERS + 6)
        report.record(report.Row(
            "workflows: release through crashes", nodes, None, 0, len(waiting), None, None, "none",
            figures={"workflows": WORKFLOWS, "fan-in per join": MEMBERS, "joins released once": releases,
                     "joins": joins, "workers SIGKILLed": kills, "redis crashes": 1,
                     "left waiting": len(waiting), "pending counter at end": pending, "wrong": len(wrong)},
        ))
        assert not wrong, wrong[:5]
        assert not waiting and pending == 0
        assert not problems, problems
    finally:
        stack.stop()
