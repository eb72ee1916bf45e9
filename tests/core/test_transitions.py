"""Every legal and illegal status transition, applied through the store's atomic scripts."""

from __future__ import annotations

import pytest
from jobs_core.errors import IllegalTransition, JobNotFound
from jobs_core.model import TERMINAL_STATUSES, TRANSITIONS, JobError, JobStatus, Result, is_legal
from jobs_core.store import JobStore

W = "worker-a"


def make(store: JobStore, status: JobStatus) -> str:
    """A job brought to ``status`` through legal transitions."""
    job, _ = store.enqueue("echo", {"x": 1}, max_attempts=3)
    if status is JobStatus.QUEUED:
        return job.id
    (claimed,) = store.claim(W, 1)
    assert claimed.id == job.id
    if status is JobStatus.RUNNING:
        return job.id
    if status is JobStatus.SUCCEEDED:
        assert store.finish(W, job.id, 1, "succeeded", result=Result(b"1", "application/json")) == "succeeded"
    elif status is JobStatus.FAILED:
        assert store.finish(W, job.id, 1, "failed", error=JobError("E", "m")) == "failed"
    elif status is JobStatus.CANCELLED:
        assert store.finish(W, job.id, 1, "cancelled") == "cancelled"
    return job.id


def snapshot(store: JobStore, job_id: str) -> tuple[object, ...]:
    r = store.redis
    k = store.keys
    return (r.hgetall(k.job(job_id)), r.lrange(k.queue, 0, -1), r.lrange(k.inflight, 0, -1),
            r.zrange(k.leases, 0, -1), r.zrange(k.failed, 0, -1), r.zrange(k.delayed, 0, -1))


def test_transition_table_is_the_documented_one() -> None:
    assert set(TRANSITIONS) == set(JobStatus)
    assert {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED} == TERMINAL_STATUSES
    assert not TRANSITIONS[JobStatus.SUCCEEDED]
    assert is_legal(JobStatus.QUEUED, JobStatus.RUNNING)
    assert not is_legal(JobStatus.QUEUED, JobStatus.SUCCEEDED)
    assert is_legal(JobStatus.RUNNING, JobStatus.QUEUED)


@pytest.mark.parametrize("outcome,expected", [
    ("succeeded", JobStatus.SUCCEEDED), ("failed", JobStatus.FAILED), ("cancelled", JobStatus.CANCELLED),
    ("retry", JobStatus.QUEUED), ("handback", JobStatus.QUEUED),
])
def test_running_to_each_legal_target(store: JobStore, outcome: str, expected: JobStatus) -> None:
    job_id = make(store, JobStatus.RUNNING)
    assert store.get(job_id).status is JobStatus.RUNNING
    result = Result(b'"r"', "application/json") if outcome == "succeeded" else None
    status = store.finish(W, job_id, 1, outcome, result=result)
    assert status == expected.value
    job = store.get(job_id)
    assert job.status is expected
    assert is_legal(JobStatus.RUNNING, expected)
    # the attempt left the in-flight tracking whatever the outcome
    assert store.redis.llen(store.keys.inflight) == 0
    assert store.redis.zcard(store.keys.leases) == 0
    if outcome == "handback":
        assert job.attempts == 0  # a hand-back is not charged
        assert store.redis.lindex(store.keys.queue, 0) == f'"{job_id}"'.encode()
    if outcome == "retry":
        assert job.attempts == 1
        assert store.redis.llen(store.keys.queue) == 1


def test_queued_to_running_and_cancelled(store: JobStore) -> None:
    a = make(store, JobStatus.QUEUED)
    claimed = store.claim(W, 5)
    assert [c.id for c in claimed] == [a]
    job = store.get(a)
    assert (job.status, job.attempts, job.worker) == (JobStatus.RUNNING, 1, W)
    b = make(store, JobStatus.QUEUED)
    assert store.cancel(b).status is JobStatus.CANCELLED
    assert store.redis.llen(store.keys.queue) == 0  # removed from the queue at once
    assert store.claim(W, 5) == []


@pytest.mark.parametrize("start", [JobStatus.FAILED, JobStatus.CANCELLED])
def test_explicit_retry_of_failed_and_cancelled(store: JobStore, start: JobStatus) -> None:
    job_id = make(store, start)
    job = store.retry(job_id)
    assert job.status is JobStatus.QUEUED
    assert job.attempts == 0 and job.error is None and job.finished_at is None
    assert store.redis.zscore(store.keys.failed, job_id) is None
    assert store.redis.ttl(store.keys.job(job_id)) == -1  # live again: no expiry
    assert [c.id for c in store.claim(W, 1)] == [job_id]


@pytest.mark.parametrize("start", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancel_of_terminal_job_is_refused_and_changes_nothing(store: JobStore, start: JobStatus) -> None:
    job_id = make(store, start)
    before = snapshot(store, job_id)
    with pytest.raises(IllegalTransition) as info:
        store.cancel(job_id)
    assert (info.value.current, info.value.target) == (start.value, "cancelled")
    assert snapshot(store, job_id) == before


@pytest.mark.parametrize("start", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED])
def test_retry_of_non_failed_job_is_refused_and_changes_nothing(store: JobStore, start: JobStatus) -> None:
    job_id = make(store, start)
    before = snapshot(store, job_id)
    with pytest.raises(IllegalTransition):
        store.retry(job_id)
    assert snapshot(store, job_id) == before


@pytest.mark.parametrize("start", [JobStatus.QUEUED, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
@pytest.mark.parametrize("outcome", ["succeeded", "failed", "cancelled", "retry", "handback"])
def test_finish_outside_running_is_stale_and_changes_nothing(store: JobStore, start: JobStatus, outcome: str) -> None:
    job_id = make(store, start)
    before = snapshot(store, job_id)
    assert store.finish(W, job_id, 1, outcome, result=Result(b"2", "application/json")) is None
    assert snapshot(store, job_id) == before


def test_finish_by_another_worker_or_attempt_is_stale(store: JobStore) -> None:
    job_id = make(store, JobStatus.RUNNING)
    before = snapshot(store, job_id)
    assert store.finish("intruder", job_id, 1, "succeeded", result=Result(b"1", "x/y")) is None
    assert store.finish(W, job_id, 2, "succeeded", result=Result(b"1", "x/y")) is None
    assert snapshot(store, job_id) == before


def test_running_cancel_is_a_request(store: JobStore) -> None:
    job_id = make(store, JobStatus.RUNNING)
    job = store.cancel(job_id)
    assert job.status is JobStatus.RUNNING and job.cancel_requested
    cancel, lost = store.heartbeat(W, [(job_id, 1)], {}, 5)
    assert cancel == [job_id] and lost == []


def test_unknown_and_malformed_ids(store: JobStore) -> None:
    for bad in ["nope", "*", "../x", "00000000-0000-0000-0000-000000000000", "A" * 36]:
        with pytest.raises(JobNotFound):
            store.get(bad)
        with pytest.raises(JobNotFound):
            store.cancel(bad)
        with pytest.raises(JobNotFound):
            store.retry(bad)


def test_other_owner_sees_nothing(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {}, owner="alice")
    with pytest.raises(JobNotFound):
        store.get(job.id, owner="bob")
    with pytest.raises(JobNotFound):
        store.cancel(job.id, owner="bob")
    assert store.get(job.id).status is JobStatus.QUEUED
    assert store.get(job.id, owner="alice").owner == "alice"


def test_a_second_attempt_starts_clean_and_its_success_clears_the_first_error(store: JobStore) -> None:
    """Claim and finish skip their HDEL/ZREM when there is nothing to drop (issue 16): a job that does
    carry leftovers — progress, error and a cancel request of its first attempt, an orphan entry — must
    still have all of them cleared, and its attempts counted."""
    job_id = make(store, JobStatus.RUNNING)
    assert store.set_progress(W, job_id, 1, 0.5, "half")
    store.cancel(job_id)  # a request while running: the flag stays on the record
    assert store.redis.hget(store.keys.job(job_id), "cancel_requested") is not None
    assert store.finish(W, job_id, 1, "retry", error=JobError("E", "first")) == "queued"
    store.redis.zadd(store.keys.orphans, {job_id: 1})  # as the reaper leaves a job it found without a lease
    store.redis.hset(store.keys.control, "orphans", "1")  # and the flag it sets with it (read by claims)
    (claimed,) = store.claim(W, 1)
    assert claimed.id == job_id and claimed.attempt == 2
    fields = store.redis.hgetall(store.keys.job(job_id))
    for gone in (b"progress", b"message", b"finished_at"):
        assert gone not in fields, gone
    assert fields[b"attempts"] == b"2" and fields[b"status"] == b"running"
    assert store.redis.zscore(store.keys.orphans, job_id) is None
    assert store.finish(W, job_id, 2, "succeeded", result=Result(b"1", "application/json")) == "succeeded"
    job = store.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.error is None and job.attempts == 2
    assert store.redis.hget(store.keys.job(job_id), "cancel_requested") is None


def test_one_claim_takes_jobs_across_priorities_highest_first(store: JobStore) -> None:
    """The claim pops several entries per waiting list at once (LMPOP): order across and within
    priorities is still highest priority first, FIFO within one."""
    ids = {p: [store.enqueue("echo", {"p": p, "i": i}, priority=p)[0].id for i in range(3)] for p in (2, 5, 9)}
    claimed = [c.id for c in store.claim(W, 7)]
    assert claimed == ids[9] + ids[5] + ids[2][:1]
    assert [c.id for c in store.claim(W, 5)] == ids[2][1:]
    assert store.claim(W, 1) == []
    # the leases zset is the record of running jobs: nothing goes to the in-flight list of before
    assert store.redis.zcard(store.keys.leases) == 9 and store.redis.llen(store.keys.inflight) == 0
