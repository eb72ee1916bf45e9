"""An idle worker's loop, in process against a real Redis and a real slot child: where it blocks for work
and where it must not pause (profile 26)."""

from __future__ import annotations

import time

import pytest
from jobs_core.config import Settings
from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from jobs_worker import worker as worker_module
from jobs_worker.worker import Worker


def test_an_idle_worker_whose_wait_came_back_empty_waits_again_without_a_pause(
    settings: Settings, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocking wait that comes back empty (its timeout, or a wake token whose job another worker's claim
    took) is followed by the next blocking wait, not by a pause: the loop paused 50 ms there, and a job
    submitted meanwhile waited for it (the 1-slot round trip's ~27 ms p50, profile 26). The job submitted
    next is claimed by the blocking wait itself. The pauses are recorded around the real sleep."""
    worker = Worker(settings, concurrency=1, store=store)
    worker.start()
    pauses: list[float] = []
    real_sleep = time.sleep

    def recorded_sleep(seconds: float) -> None:
        pauses.append(seconds)
        real_sleep(seconds)

    try:
        monkeypatch.setattr(worker_module.time, "sleep", recorded_sleep)
        store.redis.rpush(store.keys.wake, "1")  # a token whose job another worker's claim took
        assert worker._step()
        assert store.redis.llen(store.keys.wake) == 0 and worker.waited_empty  # the wait took it: nothing
        job, _ = store.enqueue("echo", {"n": 1})
        assert worker._step()  # straight to the blocking wait: it takes the job's token, and its claim the job
        claimed = store.get(job.id)  # (the step also waits a moment for the child: it may have ended it)
        assert claimed.status in (JobStatus.RUNNING, JobStatus.SUCCEEDED) and claimed.worker == worker.worker_id
        assert pauses == []
        for _ in range(100):  # the child ends the job: the loop collects and stores it
            if not worker._busy():
                break
            worker._step()
        assert store.get(job.id).status is JobStatus.SUCCEEDED
    finally:
        monkeypatch.undo()
        for slot in worker.slots:
            slot.stop()
