"""The record's 'waiters' count (issue 16): a wait on a job's channel (GET /jobs/<id>?wait) counts itself in
before it subscribes, and the worker's finish publishes the ended job on the channel only while the count
is above 0, read by the finish's own HMGET: no PUBSUB NUMSUB (nor PUBLISH) per finished job that nobody
waits for. Every waiter still gets every end. On the real Redis."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from jobs_core.config import Settings
from jobs_core.model import JobStatus, Result
from jobs_core.store import JobStore
from support.redis_server import RedisServer

OK = Result(b'"ok"', "application/json")


def calls(client: redis.Redis, name: str) -> int:
    return int(client.info("commandstats").get(f"cmdstat_{name}", {}).get("calls", 0))


def subscribed(store: JobStore, job_id: str) -> None:
    channel = store.keys.events(job_id)
    deadline = time.monotonic() + 5
    while dict(store.redis.pubsub_numsub(channel)).get(channel.encode(), 0) == 0:
        assert time.monotonic() < deadline, "the waiter never subscribed"
        time.sleep(0.01)


def test_a_finish_nobody_waits_for_publishes_nothing_and_asks_nothing(
    settings: Settings, private_redis: RedisServer
) -> None:
    store = JobStore.from_settings(settings.replace(redis_url=private_redis.url))
    ids = [store.enqueue("echo", {"i": i})[0].id for i in range(5)]
    claimed = store.claim("w", 5)
    store.redis.config_resetstat()
    for c in claimed:
        assert store.finish("w", c.id, c.attempt, "succeeded", result=OK) == "succeeded"
    stats = store.redis.info("commandstats")
    assert "cmdstat_pubsub|numsub" not in stats and "cmdstat_publish" not in stats, sorted(stats)
    assert {store.get(i).status for i in ids} == {JobStatus.SUCCEEDED}


def test_a_channel_waiter_is_delivered_to_and_leaves_no_count(store: JobStore) -> None:
    """Counted in while it waits; the finish that delivers the end drops the field; a wait that times out
    counts itself out."""
    job, _ = store.enqueue("echo", {})
    (claimed,) = store.claim("w", 1)
    assert store.wait(job.id, 0.2).status is JobStatus.RUNNING  # timed out: counted out again
    assert store.redis.hget(store.keys.job(job.id), "waiters") is None
    other = JobStore.from_settings(store.settings)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(other.wait_result(job.id, 10)))
    t.start()
    subscribed(store, job.id)
    assert store.redis.hget(store.keys.job(job.id), "waiters") == b"1"
    store.finish("w", job.id, claimed.attempt, "succeeded", result=OK)
    t.join(10)
    done, result = out[0]
    assert done.status is JobStatus.SUCCEEDED and result == OK
    assert store.redis.hget(store.keys.job(job.id), "waiters") is None


def test_a_waiter_that_does_not_count_itself_gets_the_end_by_its_re_read(store: JobStore) -> None:
    """Rolling upgrade: an API of the version before the count subscribes without counting itself. The
    finish publishes nothing to it; the record says the job ended, which that waiter's once-a-second
    re-read finds (at most ~1 s late)."""
    job, _ = store.enqueue("echo", {})
    (claimed,) = store.claim("w", 1)
    pubsub = store.redis.pubsub()
    pubsub.subscribe(store.keys.events(job.id))
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"  # type: ignore[index]
    store.finish("w", job.id, claimed.attempt, "succeeded", result=OK)
    assert pubsub.get_message(timeout=0.3) is None
    assert store.get(job.id).status is JobStatus.SUCCEEDED
    pubsub.close()


def test_a_crashed_waiters_count_costs_one_publish_and_is_dropped(
    settings: Settings, private_redis: RedisServer
) -> None:
    store = JobStore.from_settings(settings.replace(redis_url=private_redis.url))
    job, _ = store.enqueue("echo", {})
    (claimed,) = store.claim("w", 1)
    assert store._waiters(keys=[store.keys.job(job.id)], args=[1]) == 1  # counted in, then gone
    before = calls(store.redis, "publish")
    store.finish("w", job.id, claimed.attempt, "succeeded", result=OK)
    assert calls(store.redis, "publish") == before + 1
    assert store.redis.hget(store.keys.job(job.id), "waiters") is None


def test_no_record_is_created_by_a_waiter_of_an_unknown_job(store: JobStore) -> None:
    missing = store.keys.job("00000000-0000-4000-8000-000000000000")
    assert store._waiters(keys=[missing], args=[1]) == -1
    assert not store.redis.exists(missing)
