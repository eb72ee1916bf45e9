"""Run-time percentiles from real workers: jobs of known durations land in their buckets, and the
percentiles the API reads are those of the attempts' run times (within the documented bucket error)."""

from __future__ import annotations

import math

from jobs_core import histogram
from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from support.procs import wait_for

from .conftest import StartWorker


def test_percentiles_of_real_workers_match_the_attempts(store: JobStore, workers: StartWorker, namespace: str) -> None:
    fast = [store.enqueue("sleep", {"seconds": 0.05})[0].id for _ in range(18)]
    slow = [store.enqueue("sleep", {"seconds": 1.0})[0].id for _ in range(2)]
    workers("-c", "4")
    wait_for(lambda: all(j.status is JobStatus.SUCCEEDED for j in store.get_many(fast + slow)), 90,
             interval=0.2, what="every sleep job succeeded")
    runs = sorted(a["end"] - a["start"] for j in fast + slow for a in store.attempt_log(j))
    assert len(runs) == 20 and runs[0] >= 50 and runs[-2] >= 1000  # each attempt ran at least its sleep

    got = store.task_run_time("sleep", [namespace])
    assert got["hour"]["count"] == got["day"]["count"] == 20
    for p in histogram.PERCENTILES:
        true = runs[math.ceil(p / 100 * len(runs)) - 1]  # nearest rank, as the histogram reads it
        estimate = got["hour"][f"p{p}_ms"]
        assert abs(estimate - true) <= max(true * histogram.RELATIVE_ERROR, 1) + 0.1, (p, estimate, true)
    assert got["hour"]["p50_ms"] < 1000 <= got["hour"]["p99_ms"] * (1 + histogram.RELATIVE_ERROR)
    assert store.queue_run_time(namespace)["tasks"]["sleep"] == got
    minute = store.attempt_log(slow[0])[0]["end"] // 60000
    assert 0 < store.redis.ttl(store.keys.history(minute)) <= store.settings.history_seconds
