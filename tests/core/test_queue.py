"""The queue: atomic enqueue, hotqueue compatibility, backpressure, idempotency, delays, listing,
leases and the reaper, results."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis
from hotqueue import HotQueue
from jobs_core.config import Settings
from jobs_core.errors import IdempotencyConflict, QueueFull, ResultExpired, ResultNotReady
from jobs_core.model import JobStatus, Result
from jobs_core.store import JobStore


def test_enqueue_writes_record_and_queue_entry_together(store: JobStore) -> None:
    job, created = store.enqueue("echo", {"n": 1}, owner="t1", max_attempts=4, timeout=9)
    assert created
    raw = store.redis.hgetall(store.keys.job(job.id))
    assert raw[b"status"] == b"queued" and raw[b"owner"] == b"t1" and raw[b"max_attempts"] == b"4"
    assert store.redis.lrange(store.keys.queue, 0, -1) == [json.dumps(job.id).encode()]
    assert store.get(job.id) == job  # what enqueue returned is what is stored


def test_a_refused_enqueue_leaves_no_record_and_no_entry(store: JobStore) -> None:
    store.enqueue("echo", {}, owner="a", max_pending=1)
    keys_before = set(store.redis.scan_iter(f"{store.keys.prefix}:job:*"))
    with pytest.raises(QueueFull) as info:
        store.enqueue("echo", {}, owner="b", max_pending=1)
    assert info.value.scope == "global"
    assert set(store.redis.scan_iter(f"{store.keys.prefix}:job:*")) == keys_before
    assert store.redis.llen(store.keys.queue) == 1


def test_per_tenant_cap_counts_only_pending_jobs(store: JobStore) -> None:
    store.enqueue("echo", {}, owner="a", max_pending_per_tenant=2)
    store.enqueue("echo", {}, owner="a", max_pending_per_tenant=2)
    with pytest.raises(QueueFull) as info:
        store.enqueue("echo", {}, owner="a", max_pending_per_tenant=2)
    assert info.value.scope == "tenant"
    store.enqueue("echo", {}, owner="b", max_pending_per_tenant=2)  # another tenant is not affected
    store.claim("w", 1)  # one of a's jobs starts: a is below the cap again
    store.enqueue("echo", {}, owner="a", max_pending_per_tenant=2)


def test_concurrent_enqueues_respect_the_cap_exactly(settings: Settings) -> None:
    errors: list[Exception] = []
    created: list[str] = []

    def producer() -> None:
        st = JobStore.from_settings(settings)
        for _ in range(50):
            try:
                created.append(st.enqueue("echo", {}, max_pending=120)[0].id)
            except QueueFull as e:
                errors.append(e)

    threads = [threading.Thread(target=producer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = JobStore.from_settings(settings)
    assert len(created) == 120 and len(errors) == 80
    assert st.redis.llen(st.keys.queue) == 120


def test_idempotency_key(store: JobStore) -> None:
    a, created_a = store.enqueue("echo", {"x": 1}, owner="t", idempotency_key="order-7")
    b, created_b = store.enqueue("echo", {"x": 1}, owner="t", idempotency_key="order-7")
    assert created_a and not created_b and a.id == b.id
    assert store.redis.llen(store.keys.queue) == 1
    with pytest.raises(IdempotencyConflict):
        store.enqueue("echo", {"x": 2}, owner="t", idempotency_key="order-7")
    c, created_c = store.enqueue("echo", {"x": 1}, owner="other", idempotency_key="order-7")
    assert created_c and c.id != a.id  # keys are per tenant


def test_hotqueue_client_sees_and_feeds_the_queue(store: JobStore, settings: Settings) -> None:
    conn = redis.Redis.from_url(settings.redis_url).connection_pool.connection_kwargs
    q = HotQueue(settings.queue, serializer=json, host=conn["host"], port=conn["port"], db=conn.get("db", 0))
    assert q.key == store.keys.queue
    job, _ = store.enqueue("echo", {"via": "api"})
    assert len(q) == 1
    assert json.loads(store.redis.lindex(store.keys.queue, 0)) == job.id
    assert q.get() == job.id  # a hotqueue consumer reads ids
    q.put(job.id)  # ...and a hotqueue producer can put one back
    assert [c.id for c in store.claim("w", 5)] == [job.id]
    q.put("not-a-job")  # an entry naming no job is set aside, never run, never blocks the queue
    q.put({"some": "dict"})
    job2, _ = store.enqueue("echo", {})
    assert [c.id for c in store.claim("w", 5)] == [job2.id]
    assert store.redis.llen(store.keys.dead_letter) == 2
    # with priorities in use, hotqueue's list is the default priority's: other priorities have their own
    urgent, _ = store.enqueue("echo", {}, priority=9)
    default, _ = store.enqueue("echo", {})
    assert len(q) == 1 and q.key == store.keys.waiting(5)
    assert [c.id for c in store.claim("w", 5)] == [urgent.id, default.id]


def test_delay_schedules_then_promotes(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {}, delay=0.3)
    assert job.run_at is not None
    assert store.counts()["delayed"] == 1 and store.counts()["queued"] == 0
    assert store.claim("w", 1) == []
    time.sleep(0.35)
    assert [c.id for c in store.claim("w", 1)] == [job.id]


def test_cancel_of_delayed_job(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {}, delay=30)
    assert store.cancel(job.id).status is JobStatus.CANCELLED
    assert store.counts()["delayed"] == 0


def test_lease_expiry_requeues_then_fails_with_worker_lost(settings: Settings) -> None:
    store = JobStore.from_settings(settings.replace(lease_seconds=0.2, reaper_interval_seconds=0.01))
    job, _ = store.enqueue("echo", {}, max_attempts=2)
    assert store.claim("dead-worker", 1)
    time.sleep(0.25)
    report = store.reap()
    assert report.ran and report.requeued == (job.id,)
    got = store.get(job.id)
    assert got.status is JobStatus.QUEUED and got.error is not None and got.error.type == "WorkerLost"
    (again,) = store.claim("w2", 1)
    assert again.attempt == 2
    time.sleep(0.25)
    time.sleep(0.02)  # past the reaper lock
    report = store.reap()
    assert report.failed == (job.id,)
    final = store.get(job.id)
    assert final.status is JobStatus.FAILED and final.error is not None and final.error.type == "WorkerLost"
    assert store.redis.zscore(store.keys.failed, job.id) is not None
    assert store.counts()["running"] == 0


def test_heartbeat_keeps_the_lease(settings: Settings) -> None:
    store = JobStore.from_settings(settings.replace(lease_seconds=0.3, reaper_interval_seconds=0.01))
    job, _ = store.enqueue("echo", {})
    store.claim("w", 1)
    for _ in range(5):
        time.sleep(0.1)
        assert store.heartbeat("w", [(job.id, 1)], {}, 5) == ([], [])
        time.sleep(0.02)
        store.reap()
    assert store.get(job.id).status is JobStatus.RUNNING
    # someone else's heartbeat for the job is refused and reported as lost
    assert store.heartbeat("other", [(job.id, 1)], {}, 5) == ([], [job.id])


def test_reaper_runs_once_per_interval_across_workers(settings: Settings) -> None:
    a = JobStore.from_settings(settings.replace(reaper_interval_seconds=0.5))
    b = JobStore.from_settings(settings.replace(reaper_interval_seconds=0.5))
    assert a.reap().ran
    assert not b.reap().ran
    assert not a.reap().ran
    time.sleep(0.55)
    assert b.reap().ran


def test_entry_moved_by_a_worker_that_died_before_claiming_is_recovered(settings: Settings) -> None:
    store = JobStore.from_settings(settings.replace(lease_seconds=0.2, reaper_interval_seconds=0.01))
    job, _ = store.enqueue("echo", {})
    # a worker of an earlier version moved it into inflight (BLMOVE) and died before claiming it
    assert store.redis.blmove(store.keys.queue, store.keys.inflight, 0.1, "LEFT", "RIGHT") is not None
    # running = jobs holding a lease: the moved entry holds none (it is in limbo until the reaper)
    assert store.counts() == {"queued": 0, "running": 0, "delayed": 0, "paused": 0, "unrunnable": 0, "failed": 0}
    store.reap()  # first sighting
    time.sleep(0.25)
    report = store.reap()
    assert job.id in report.requeued
    assert [c.id for c in store.claim("w", 1)] == [job.id]


def test_result_states(store: JobStore, settings: Settings) -> None:
    job, _ = store.enqueue("echo", {})
    with pytest.raises(ResultNotReady) as info:
        store.get_result(job.id)
    assert info.value.status == "queued"
    store.claim("w", 1)
    short = JobStore.from_settings(settings.replace(result_ttl_seconds=1, record_ttl_seconds=60))
    assert short.finish("w", job.id, 1, "succeeded", result=Result(b"\x00\x01", "image/png")) == "succeeded"
    res = store.get_result(job.id)
    assert res == Result(b"\x00\x01", "image/png")
    assert 0 < store.redis.ttl(store.keys.result(job.id)) <= 1
    assert 50 < store.redis.ttl(store.keys.job(job.id)) <= 60
    time.sleep(1.1)
    with pytest.raises(ResultExpired):
        store.get_result(job.id)


def test_listing_is_newest_first_and_never_skips_or_repeats(store: JobStore) -> None:
    ids = [store.enqueue("echo", {"i": i}, owner="p")[0].id for i in range(25)]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = store.list_jobs(owner="p", limit=7, cursor=cursor)
        seen += [j.id for j in page]
        store.enqueue("echo", {"late": True}, owner="p")  # concurrent inserts land before the cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_listing_filters_and_prunes_expired(store: JobStore) -> None:
    a = store.enqueue("echo", {}, owner="f")[0].id
    b = store.enqueue("sleep", {}, owner="f")[0].id
    c = store.enqueue("echo", {}, owner="f")[0].id
    store.cancel(a)
    page, _ = store.list_jobs(owner="f", task="echo")
    assert [j.id for j in page] == [c, a]
    page, _ = store.list_jobs(owner="f", status=JobStatus.CANCELLED)
    assert [j.id for j in page] == [a]
    store.redis.delete(store.keys.job(b))  # as if expired
    page, _ = store.list_jobs(owner="f")
    assert [j.id for j in page] == [c, a]
    assert store.redis.zscore(store.keys.owner_index("f"), b) is None
    with pytest.raises(ValueError):
        store.list_jobs(cursor="abc")


def test_wait_returns_when_terminal_without_polling(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {})
    store.claim("w", 1)

    def finish_later() -> None:
        time.sleep(0.3)
        store.finish("w", job.id, 1, "succeeded", result=Result(b"1", "application/json"))

    threading.Thread(target=finish_later).start()
    start = time.monotonic()
    got = store.wait(job.id, timeout=5)
    elapsed = time.monotonic() - start
    assert got.status is JobStatus.SUCCEEDED
    assert 0.25 < elapsed < 2
    start = time.monotonic()
    job2, _ = store.enqueue("echo", {})
    assert store.wait(job2.id, timeout=0.4).status is JobStatus.QUEUED
    assert time.monotonic() - start >= 0.39
