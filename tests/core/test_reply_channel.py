"""The reply channel (issue 16's round trip): a thread that submits with ``reply=True`` subscribes its own
channel once, every end publishes the ended job there (a worker's finish, a cancel, the reaper, a workflow
cascade), and ``wait_result`` then reads nothing at all; an end without that message (a version of before
reply channels, a lost message) still ends the wait, through the once-a-second re-read."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from jobs_core import waiting
from jobs_core.config import Settings
from jobs_core.model import Job, JobError, JobStatus, Result
from jobs_core.store import JobStore
from jobs_core.workflows import Dependency, FlowNode


@pytest.fixture
def pstore(private_redis: Any, settings: Settings) -> JobStore:
    """A store on a Redis of the test's own (its command counts are the test's alone)."""
    return JobStore.from_settings(settings.replace(redis_url=private_redis.url))


def calls(store: JobStore, *names: str) -> dict[str, int]:
    stats = store.redis.info("commandstats")
    return {n: int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names}


WAITER_COMMANDS = ("hgetall", "get", "subscribe", "unsubscribe", "publish")


def test_a_reply_waiter_reads_nothing_after_its_submission(pstore: JobStore) -> None:
    job, created = pstore.enqueue("echo", {"x": 1}, reply=True)
    assert created and pstore.redis.hget(pstore.keys.job(job.id), "reply_to") == pstore.reply_channel().encode()
    (claimed,) = pstore.claim("w", 1)
    before = calls(pstore, *WAITER_COMMANDS)
    data = b"line one\nline two\n\x00\xff binary"
    assert pstore.finish("w", job.id, claimed.attempt, "succeeded", result=Result(data, "application/x-test")) \
        == "succeeded"
    done, result = pstore.wait_result(job.id, 10)
    assert done.status is JobStatus.SUCCEEDED and done.id == job.id and done.params == {"x": 1}
    assert done.finished_at is not None and done.attempts == 1 and done.worker == "w"
    assert result == Result(data, "application/x-test")
    after = calls(pstore, *WAITER_COMMANDS)
    # only the finish script's own HGETALL (the delivered record) and PUBLISH (a first send reads no claim
    # memo): no subscription, no read by the waiter
    assert {n: after[n] - before[n] for n in WAITER_COMMANDS} == \
        {"hgetall": 1, "get": 0, "subscribe": 0, "unsubscribe": 0, "publish": 1}
    assert pstore.get_result(job.id) == result


def test_the_reply_channel_is_subscribed_once_per_thread(pstore: JobStore) -> None:
    pstore.enqueue("echo", {}, reply=True)
    first = calls(pstore, "subscribe")["subscribe"]
    for _ in range(3):
        pstore.enqueue("echo", {}, reply=True)
    assert calls(pstore, "subscribe")["subscribe"] == first
    other: list[str | None] = []
    t = threading.Thread(target=lambda: other.append(pstore.reply_channel()))
    t.start()
    t.join(10)
    assert other[0] is not None and other[0] != pstore.reply_channel()  # each thread its own


def test_replies_that_come_out_of_order_are_kept_for_their_own_wait(pstore: JobStore) -> None:
    a, _ = pstore.enqueue("echo", {"n": "a"}, reply=True)
    b, _ = pstore.enqueue("echo", {"n": "b"}, reply=True)
    claimed = {c.id: c for c in pstore.claim("w", 2)}
    pstore.finish("w", b.id, claimed[b.id].attempt, "succeeded", result=Result(b'"b"', "application/json"))
    pstore.finish("w", a.id, claimed[a.id].attempt, "failed", error=JobError("Boom", "no"))
    before = calls(pstore, "hgetall", "get")
    done_a, result_a = pstore.wait_result(a.id, 10)  # b's message comes first and is kept
    done_b, result_b = pstore.wait_result(b.id, 10)
    assert done_a.status is JobStatus.FAILED and result_a is None and done_a.error is not None
    assert done_b.status is JobStatus.SUCCEEDED and result_b == Result(b'"b"', "application/json")
    assert calls(pstore, "hgetall", "get") == before  # neither wait read anything


def test_a_job_channel_listener_elsewhere_is_delivered_to_as_well(pstore: JobStore) -> None:
    """A GET ?wait long-poll in another process listens on the job's channel: it is served too."""
    job, _ = pstore.enqueue("echo", {}, reply=True)
    (claimed,) = pstore.claim("w", 1)
    other = JobStore.from_settings(pstore.settings)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(other.wait_result(job.id, 10)))
    t.start()
    channel = pstore.keys.events(job.id)
    while dict(pstore.redis.pubsub_numsub(channel)).get(channel.encode(), 0) == 0:
        threading.Event().wait(0.01)
    pstore.finish("w", job.id, claimed.attempt, "succeeded", result=Result(b"1", "application/json"))
    t.join(10)
    mine = pstore.wait_result(job.id, 10)
    assert out[0] == mine and mine[1] == Result(b"1", "application/json")


def test_ends_without_a_reply_message_still_end_the_wait(pstore: JobStore) -> None:
    """Ends made by a version of before (rolling upgrade): an API's cancel or a reaper that announce the
    end as a bare status on the job's channel only, a worker that does not read reply_to (no message at
    all): the waiter's re-read finds each."""
    job, _ = pstore.enqueue("echo", {}, reply=True)
    pstore.redis.hset(pstore.keys.job(job.id), mapping={"status": "cancelled", "finished_at": 1})
    pstore.redis.publish(pstore.keys.events(job.id), "cancelled")
    assert pstore.wait(job.id, 10).status is JobStatus.CANCELLED
    job, _ = pstore.enqueue("echo", {}, reply=True)
    pstore.claim("w", 1)
    # the finish of an older worker: the record changes, nothing is published on the reply channel
    pstore.redis.hset(pstore.keys.job(job.id), mapping={"status": "succeeded", "result_type": "application/json"})
    pstore.redis.set(pstore.keys.result(job.id), b"[1]")
    done, result = pstore.wait_result(job.id, 10)
    assert done.status is JobStatus.SUCCEEDED and result == Result(b"[1]", "application/json")


def test_a_lost_reply_message_is_covered_by_the_re_read(pstore: JobStore) -> None:
    """The waiter's connection dropped while the job ended (the message is lost with it)."""
    job, _ = pstore.enqueue("echo", {}, reply=True)
    (claimed,) = pstore.claim("w", 1)
    channel = pstore.reply_channel()
    assert channel is not None
    pstore.redis.client_kill_filter(_type="pubsub")
    pstore.finish("w", job.id, claimed.attempt, "succeeded", result=Result(b"3", "application/json"))
    done, result = pstore.wait_result(job.id, 10)
    assert done.status is JobStatus.SUCCEEDED and result == Result(b"3", "application/json")
    again, _ = pstore.enqueue("echo", {}, reply=True)  # and the thread's next waits work as before
    (claimed,) = pstore.claim("w", 1)
    pstore.finish("w", again.id, claimed.attempt, "succeeded", result=Result(b"4", "application/json"))
    assert pstore.wait_result(again.id, 10)[1] == Result(b"4", "application/json")


def test_a_wait_that_times_out_answers_the_job_as_it_is_and_can_wait_again(pstore: JobStore) -> None:
    job, _ = pstore.enqueue("echo", {}, reply=True)
    assert pstore.wait(job.id, 0.2).status is JobStatus.QUEUED
    (claimed,) = pstore.claim("w", 1)
    pstore.finish("w", job.id, claimed.attempt, "succeeded", result=Result(b"5", "application/json"))
    before = calls(pstore, "hgetall")
    assert pstore.wait_result(job.id, 10)[1] == Result(b"5", "application/json")
    assert calls(pstore, "hgetall")["hgetall"] == before["hgetall"]  # still delivered, not read


def test_an_idempotent_repeat_waits_on_the_jobs_channel(pstore: JobStore) -> None:
    job, _ = pstore.enqueue("echo", {}, idempotency_key="k1")
    again, created = pstore.enqueue("echo", {}, idempotency_key="k1", reply=True)
    assert again.id == job.id and not created
    (claimed,) = pstore.claim("w", 1)
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(pstore.finish("w", job.id, claimed.attempt, "succeeded",
                                                                 result=Result(b"6", "application/json"))))
    t.start()
    assert pstore.wait_result(again.id, 10)[1] == Result(b"6", "application/json")
    t.join(10)


def test_a_reply_channel_outside_the_events_prefix_is_not_published_to(pstore: JobStore) -> None:
    job, _ = pstore.enqueue("echo", {})
    pstore.redis.hset(pstore.keys.job(job.id), "reply_to", "elsewhere")
    (claimed,) = pstore.claim("w", 1)
    listener = redis.Redis.from_url(pstore.settings.redis_url).pubsub()
    listener.subscribe("elsewhere")
    assert listener.get_message(timeout=5) is not None  # the subscription confirmed
    before = calls(pstore, "publish")["publish"]
    pstore.finish("w", job.id, claimed.attempt, "succeeded", result=Result(b"7", "application/json"))
    assert calls(pstore, "publish")["publish"] == before and listener.get_message(timeout=0.2) is None
    listener.close()


# ---------------------------------------------------------------- every other end, on the reply channel
# Each end below is announced on the reply channel by the script that makes it (includes/emit.lua's emit
# with the record's reply_to), delivered with the record: the waiter returns on the message and reads
# nothing. The re-read is pushed out of reach (an hour), so a wait that did not hear the end would only
# return at its deadline, reading the record then: the HGETALL count below (the script's own delivery
# only) is what fails, not a clock.


@pytest.fixture
def no_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waiting, "REREAD_SECONDS", 3600.0)


def heard(store: JobStore, job_id: str, end: Callable[[], object], status: JobStatus) -> Job:
    """Run ``end`` (which ends the job), wait for the job on the reply channel; assert the wait read
    nothing and return the job it answered."""
    end()
    before = calls(store, "hgetall", "get")
    done = store.wait(job_id, 20)
    after = calls(store, "hgetall", "get")
    assert done.status is status and done.id == job_id
    assert after == before  # answered by the message: no read (a wait that missed it reads at its deadline)
    return done


def test_a_reply_waiter_hears_a_cancel_of_its_queued_job(pstore: JobStore, no_reread: None) -> None:
    job, _ = pstore.enqueue("echo", {"x": 1}, reply=True)
    done = heard(pstore, job.id, lambda: pstore.cancel(job.id), JobStatus.CANCELLED)
    assert done.params == {"x": 1} and done.finished_at is not None and done == pstore.get(job.id)


def test_a_reply_waiter_hears_a_cancel_of_its_delayed_job(pstore: JobStore, no_reread: None) -> None:
    job, _ = pstore.enqueue("echo", {}, reply=True, delay=60)
    done = heard(pstore, job.id, lambda: pstore.cancel(job.id), JobStatus.CANCELLED)
    assert done.run_at is None and done == pstore.get(job.id)  # delivered after the record's last change


def test_a_reply_waiter_hears_a_cancel_of_its_running_job(pstore: JobStore, no_reread: None) -> None:
    """A running job's cancel is a request; the worker that sees it ends the job 'cancelled'."""
    job, _ = pstore.enqueue("echo", {}, reply=True)
    (claimed,) = pstore.claim("w", 1)
    assert pstore.cancel(job.id).cancel_requested

    def worker_sees_it() -> None:
        assert pstore.finish("w", job.id, claimed.attempt, "cancelled") == "cancelled"

    heard(pstore, job.id, worker_sees_it, JobStatus.CANCELLED)


def test_a_reply_waiter_hears_the_reaper_fail_its_job(pstore: JobStore, no_reread: None) -> None:
    job, _ = pstore.enqueue("echo", {}, reply=True, max_attempts=1)
    pstore.claim("w", 1)
    pstore.redis.zadd(pstore.keys.for_queue(job.queue).leases, {job.id: 0})  # its lease ran out

    def reap() -> None:
        assert job.id in pstore.reap().failed  # no attempt left: the reaper fails it

    done = heard(pstore, job.id, reap, JobStatus.FAILED)
    assert done.error is not None and done.error.type == "WorkerLost" and done.worker is None


def test_a_reply_waiter_hears_a_cascade_cancel(pstore: JobStore, no_reread: None) -> None:
    """A dependent cancelled because its dependency was (includes/release.lua), its reply_to set as a
    submission with a reply channel stores it."""
    _, (first, second), _ = pstore.submit_nodes(
        "default", [FlowNode("a", "echo"), FlowNode("b", "echo", depends_on=(Dependency("a"),))], workflow=True)
    channel = pstore.reply_channel()
    assert channel is not None and pstore.get(second.id).status is JobStatus.WAITING
    pstore.redis.hset(pstore.keys.job(second.id), "reply_to", channel)
    pstore.expect_reply(second.id)
    done = heard(pstore, second.id, lambda: pstore.cancel(first.id), JobStatus.CANCELLED)
    assert done.error is not None and done.error.type == "DependencyFailed"


def test_an_end_without_reply_to_publishes_as_before(pstore: JobStore) -> None:
    """A record without reply_to (written before reply channels, or by a submitter that will not wait):
    the cancel publishes on the job's channel only and delivers nothing (no HGETALL in the script: the one
    counted is the store's read of its answer); with reply_to, one HGETALL and one PUBLISH more."""
    counts = []
    for reply in (False, True):
        job, _ = pstore.enqueue("echo", {}, reply=reply)
        before = calls(pstore, "hgetall", "publish")
        pstore.cancel(job.id)
        after = calls(pstore, "hgetall", "publish")
        counts.append({n: after[n] - before[n] for n in after})
    assert counts == [{"hgetall": 1, "publish": 1}, {"hgetall": 2, "publish": 2}]


def test_a_delivered_end_is_not_turned_into_a_log_string(pstore: JobStore, settings: Settings) -> None:
    """redis-py's own handler of RESP3 push messages builds ``"Push response: " + str(message)`` for a debug
    line on every message, whatever the level: the repr of the whole record and result, on the waiter's path
    after its last wake-up. The waiter's connection hands the message on as it came: nothing reaches that
    logger (at DEBUG it would hold the result), and a large binary result arrives whole, for ``wait`` and for
    a wait on the job's own channel alike."""
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    push_log = logging.getLogger("push_response")
    handler, level = Keep(logging.DEBUG), push_log.level
    push_log.addHandler(handler)
    push_log.setLevel(logging.DEBUG)
    try:
        data = bytes(range(256)) * 256  # 64 KiB, every byte value
        job, _ = pstore.enqueue("echo", {}, reply=True)
        other, _ = pstore.enqueue("echo", {})
        claimed = pstore.claim("w", 2)
        assert {c.id for c in claimed} == {job.id, other.id}
        pstore.finish("w", job.id, 1, "succeeded", result=Result(data, "application/octet-stream"))
        done, result = pstore.wait_result(job.id, 10)
        assert done.status is JobStatus.SUCCEEDED and result == Result(data, "application/octet-stream")
        threading.Timer(0.2, lambda: pstore.finish("w", other.id, 1, "succeeded",
                                                    result=Result(data, "application/octet-stream"))).start()
        ended, result = JobStore.from_settings(pstore.settings).wait_result(other.id, 10)
        assert ended.status is JobStatus.SUCCEEDED and result == Result(data, "application/octet-stream")
    finally:
        push_log.removeHandler(handler)
        push_log.setLevel(level)
    assert [r.getMessage()[:40] for r in records] == []
