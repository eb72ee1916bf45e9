"""A partially busy worker's wait for work (profile 31), in process against a real Redis and real slot
children: it blocks for a wake token on a second connection beside its children's pipes, claims only when
that wait comes back, and passes on a token it took when it stops instead of claiming."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import pytest
from jobs_core.config import Settings
from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from jobs_worker.worker import Worker


class Claims:
    """The claims a worker makes (the real calls, recorded): each one's count (negative: after a wait)."""

    def __init__(self, worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts: list[int] = []
        self.replies = 0  # replies the second connection's wait brought
        real_claim, real_read = worker.store.finish_and_claim, worker.waker.read

        def finish_and_claim(worker_id: str, finishes: Any, claim: int) -> Any:
            if not finishes:
                self.counts.append(claim)
            return real_claim(worker_id, finishes, claim)

        def read() -> None:
            self.replies += 1
            real_read()

        monkeypatch.setattr(worker.store, "finish_and_claim", finish_and_claim)
        monkeypatch.setattr(worker.waker, "read", read)


@pytest.fixture
def partially_busy(settings: Settings, store: JobStore) -> Iterator[Worker]:
    """A 2-slot worker with one slot running a long job, its other slot waiting on the second connection."""
    worker = Worker(settings, concurrency=2, store=store)
    worker.start()
    try:
        long_job, _ = store.enqueue("sleep", {"seconds": 30})
        for _ in range(50):
            worker._step()
            if worker.waker.pending:
                break
        assert store.get(long_job.id).status is JobStatus.RUNNING
        assert len(worker._busy()) == 1 and worker.waker.pending
        yield worker
    finally:
        worker.hand_back_now = worker.stopping = True
        worker._step()  # hands the long job back
        worker.waker.close()
        for slot in worker.slots:
            slot.stop()


def test_a_job_for_a_partially_busy_worker_is_claimed_through_its_wake_wait(
    partially_busy: Worker, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's wake token ends the second connection's wait, and the one claim that follows (a claim after
    a wait) takes the job: no claim is made while nothing arrives (it claimed every 50 ms, and a job waited
    for that: ~56 ms p50, profile 31), and the token is not left behind for an idle worker to wake on."""
    worker = partially_busy
    claims = Claims(worker, monkeypatch)
    for _ in range(2):  # nothing queued: the loop wakes for its children's deadlines, and claims nothing
        worker._step()
    # a claim only after the wait came back (at its 1 s timeout, on a slow machine), as a claim after a wait
    assert all(c == -1 for c in claims.counts) and len(claims.counts) <= claims.replies
    job, _ = store.enqueue("echo", {"n": 1})
    for _ in range(50):
        worker._step()
        if store.get(job.id).status is not JobStatus.QUEUED:
            break
    claimed = store.get(job.id)
    assert claimed.status in (JobStatus.RUNNING, JobStatus.SUCCEEDED) and claimed.worker == worker.worker_id
    assert claims.counts and claims.counts[-1] == -1  # the free slot's claim, after the wait
    assert len(claims.counts) <= claims.replies
    assert store.redis.llen(store.keys.wake) == 0  # the token was taken by the wait, not left behind


def test_a_token_the_wait_took_when_the_worker_stops_is_passed_on(
    partially_busy: Worker, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the second connection's wait has taken a token: the draining worker claims nothing, and
    the token is back in the wake list for another worker (a job queued for it is not left to a timeout)."""
    worker = partially_busy
    claims = Claims(worker, monkeypatch)
    store.redis.rpush(store.keys.wake, "1")  # a token (its job's submission), taken by the outstanding wait
    for _ in range(1000):
        if store.redis.llen(store.keys.wake) == 0:
            break
    assert store.redis.llen(store.keys.wake) == 0
    worker._on_signal(signal.SIGTERM, None)
    assert worker._step()  # draining: the long job still runs
    assert not worker.waker.pending and claims.counts == []
    assert store.redis.llen(store.keys.wake) == 1  # passed on


def test_a_stop_cuts_the_wait_short_without_inventing_a_token(
    partially_busy: Worker, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM with the wait outstanding and no token: the wait is unblocked at once (CLIENT UNBLOCK), nothing
    is claimed and no token is pushed (an idle worker would wake for nothing)."""
    worker = partially_busy
    claims = Claims(worker, monkeypatch)
    worker._on_signal(signal.SIGTERM, None)
    assert worker._step()
    assert not worker.waker.pending and claims.replies == 1 and claims.counts == []
    assert store.redis.llen(store.keys.wake) == 0


def test_a_lost_wait_is_followed_by_a_claim(
    partially_busy: Worker, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second connection dies under the wait (it may have taken a token whose reply is lost): the loop
    claims for its free slot as after a wait, and a job queued meanwhile is claimed; the wait starts again
    on a new connection."""
    worker = partially_busy
    claims = Claims(worker, monkeypatch)
    lost_id = worker.waker.client_id
    job, _ = store.enqueue("echo", {"n": 2}, delay=3600)  # no token: only a claim finds it ...
    store.redis.zadd(store.keys.delayed, {job.id: 0})  # ... once it is due (the claim promotes it)
    store.redis.hset(store.keys.control, "delayed", "0")
    store.redis.client_kill_filter(_id=lost_id)
    for _ in range(50):
        worker._step()
        if store.get(job.id).status is not JobStatus.QUEUED:
            break
    assert store.get(job.id).worker == worker.worker_id
    assert claims.counts[0] == -1
    for _ in range(50):
        if worker.waker.pending:
            break
        worker._step()
    assert worker.waker.pending and worker.waker.client_id != lost_id
