"""A waiter on its reply channel (``enqueue(reply=True)`` + ``wait_result``) against real worker processes:
the finish delivers to it, and a worker SIGKILLed mid-job does not leave it waiting (the job runs again
elsewhere and that finish delivers; the re-read covers anything lost)."""

from __future__ import annotations

import os
import signal

from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from support.procs import wait_for

from .conftest import StartWorker


def test_a_real_worker_delivers_to_the_reply_channel(store: JobStore, workers: StartWorker) -> None:
    workers("--concurrency", "2")
    for n in range(5):
        job, _ = store.enqueue("echo", {"n": n}, reply=True)
        assert store.redis.hget(store.keys.job(job.id), "reply_to") is not None
        done, result = store.wait_result(job.id, 30)
        assert done.status is JobStatus.SUCCEEDED and result is not None and result.data == b'{"n":' + \
            str(n).encode() + b"}"


def test_a_reply_waiter_outlives_a_sigkilled_worker(store: JobStore, workers: StartWorker, namespace: str) -> None:
    key = f"{namespace}:executions"
    job, _ = store.enqueue("record", {"key": key, "seconds": 1.5}, max_attempts=3, reply=True)
    victim = workers()
    wait_for(lambda: store.get(job.id).status is JobStatus.RUNNING, 15, what="running")
    os.kill(victim.pid, signal.SIGKILL)  # no chance to hand back
    victim.wait(5)
    workers()
    done, result = store.wait_result(job.id, 30)
    assert done.status is JobStatus.SUCCEEDED and done.attempts == 2 and result is not None
