"""A fan-in of 100 dependencies through real worker processes that are SIGKILLed and restarted while the
members run: the join is released exactly once, after the last member succeeded, and reads all 100
results; a failing member cascades; counters stay exact."""

from __future__ import annotations

import os
import random
import signal
import time

from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from jobs_core.workflows import Dependency, FlowNode
from support.procs import wait_for
from worker.conftest import StartWorker

MEMBERS = 100


def test_fan_in_of_100_released_once_through_sigkills(store: JobStore, workers: StartWorker, namespace: str) -> None:
    members = [FlowNode(f"m{i}", "number", {"n": i, "seconds": 0.15}, max_attempts=10) for i in range(MEMBERS)]
    join = FlowNode("join", "gather", {"key": f"{namespace}:join-runs"},
                    tuple(Dependency(m.name) for m in members))
    wf, jobs = store.submit_flow("t", [*members, join], workflow=True)
    assert wf is not None and jobs[-1].status is JobStatus.WAITING
    procs = [workers("--concurrency", "2") for _ in range(3)]
    kills = 0
    rng = random.Random(14)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and kills < 4:
        time.sleep(rng.uniform(0.8, 1.6))
        done = sum(store.get(j.id).status is JobStatus.SUCCEEDED for j in jobs[:-1])
        if done >= MEMBERS - 10:
            break
        victim = procs.pop(rng.randrange(len(procs)))
        os.kill(victim.pid, signal.SIGKILL)  # mid-job: its members are re-run after the lease
        victim.wait()
        kills += 1
        procs.append(workers("--concurrency", "2"))
    assert kills >= 2, "the members finished before the workers could be killed: make them slower"
    joined = wait_for(lambda: (j := store.get(jobs[-1].id)).is_terminal and j, timeout=120, interval=0.2,
                      what="the join to finish")
    assert joined.status is JobStatus.SUCCEEDED
    member_jobs = store.get_many([j.id for j in jobs[:-1]])
    assert all(m.status is JobStatus.SUCCEEDED for m in member_jobs)
    assert joined.started_at is not None
    assert joined.started_at >= max(m.finished_at for m in member_jobs if m.finished_at)  # after the last one
    result = store.get_result(joined.id)
    assert result.data == b'{"count":100,"sum":4950}'
    assert store.redis.hget(store.keys.job(joined.id), "deps_left") == b"0"  # decremented exactly 100 times
    assert int(store.redis.hget(store.keys.pending, "t") or 0) == 0  # released (counted pending) once
    runs = store.redis.lrange(f"{namespace}:join-runs", 0, -1)
    assert len(runs) == joined.attempts  # the join ran once per attempt: never from a second release
    assert store.get_workflow(wf).status == "succeeded"
