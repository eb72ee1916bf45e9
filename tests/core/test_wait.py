"""The long-poll wait (JobStore.wait / wait_result): a worker's finish delivers the record and result with
the end notification when someone waits (issue 16's round trip), and every other way a job ends still
ends the wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from jobs_core.config import Settings
from jobs_core.model import JobError, JobStatus, Result
from jobs_core.store import JobStore


def waiting(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except Exception as e:  # shown by the assertions
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def subscribed(store: JobStore, job_id: str) -> None:
    """Until the waiter's subscription is in place (the finish delivers only to a listener)."""
    deadline = time.monotonic() + 5
    channel = store.keys.events(job_id)
    while time.monotonic() < deadline:
        if dict(store.redis.pubsub_numsub(channel)).get(channel.encode(), 0) > 0:
            return
        time.sleep(0.01)
    raise AssertionError("the waiter never subscribed")


def test_a_finish_delivers_record_and_result_to_the_waiter_which_reads_neither(
    private_redis: object, settings: Settings
) -> None:
    from support.redis_server import RedisServer

    assert isinstance(private_redis, RedisServer)
    store = JobStore.from_settings(settings.replace(redis_url=private_redis.url))
    job, _ = store.enqueue("echo", {"x": 1})
    (claimed,) = store.claim("w", 1)

    def hgetalls() -> int:
        return int(store.redis.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))

    first = hgetalls()
    thread, out = waiting(lambda: store.wait_result(job.id, 10))
    subscribed(store, job.id)
    deadline = time.monotonic() + 5
    while hgetalls() == first and time.monotonic() < deadline:  # the waiter's one read, once subscribed
        time.sleep(0.01)
    before = store.redis.info("commandstats")
    data = b"line one\nline two\n\x00\xff binary"  # newlines and bytes that are not UTF-8 survive
    assert store.finish("w", job.id, claimed.attempt, "succeeded", result=Result(data, "application/x-test")) \
        == "succeeded"
    thread.join(10)
    (got,) = out
    assert not isinstance(got, Exception), got
    done, result = got
    assert done.status is JobStatus.SUCCEEDED and done.id == job.id and done.params == {"x": 1}
    assert done.finished_at is not None and done.attempts == 1 and done.worker == "w"
    assert result == Result(data, "application/x-test")
    after = store.redis.info("commandstats")
    # the finish script's own HGETALL (the delivered record; a first send reads no claim memo): the waiter
    # read neither the record nor the result
    reads = {c: after.get(f"cmdstat_{c}", {}).get("calls", 0) - before.get(f"cmdstat_{c}", {}).get("calls", 0)
             for c in ("hgetall", "get")}
    assert reads == {"hgetall": 1, "get": 0}, reads
    assert store.get_result(job.id) == result  # and what was delivered is what is stored


def test_a_failed_job_is_delivered_without_a_result(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {})
    (claimed,) = store.claim("w", 1)
    thread, out = waiting(lambda: store.wait_result(job.id, 10))
    subscribed(store, job.id)
    store.finish("w", job.id, claimed.attempt, "failed", error=JobError("Boom", "no"))
    thread.join(10)
    (done, result), = out
    assert done.status is JobStatus.FAILED and done.error is not None and done.error.type == "Boom"
    assert result is None


def test_a_bare_end_notification_still_ends_the_wait(store: JobStore) -> None:
    """Cancels, the reaper and workers of before issue 16 publish the bare status: the waiter reads."""
    job, _ = store.enqueue("echo", {})
    thread, out = waiting(lambda: store.wait(job.id, 10))
    subscribed(store, job.id)
    store.cancel(job.id)
    thread.join(10)
    assert [j.status for j in out] == [JobStatus.CANCELLED]
    job, _ = store.enqueue("echo", {})
    store.claim("w", 1)
    thread, out = waiting(lambda: store.wait_result(job.id, 10))
    subscribed(store, job.id)
    # the finish of an older worker: the record changes, then the bare status is published
    store.redis.hset(store.keys.job(job.id), mapping={"status": "succeeded", "result_type": "application/json"})
    store.redis.set(store.keys.result(job.id), b"[1]")
    store.redis.publish(store.keys.events(job.id), "succeeded")
    thread.join(10)
    (done, result), = out
    assert done.status is JobStatus.SUCCEEDED and result == Result(b"[1]", "application/json")

