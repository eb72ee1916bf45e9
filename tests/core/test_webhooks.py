"""Webhooks on the real Redis with a real loopback receiver: the outbox is written by the terminal scripts
only (never for a stale or duplicate finish), dispatchers deliver signed requests (verified with the
``standardwebhooks`` package) at least once, retry while the receiver answers 500 or is down, share the work
through the consumer group (a dead dispatcher's events are claimed), and refuse unsafe destinations."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest
from jobs_core.config import Settings
from jobs_core.errors import IllegalTransition, UnsafeWebhookUrl
from jobs_core.keys import WEBHOOK_GROUP
from jobs_core.model import JobError, Result
from jobs_core.store import JobStore
from jobs_core.webhooks import Dispatcher, WebhookSecrets, check_literal, check_url, resolve
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from support.webhook_receiver import Receiver

WORKER = "w1"


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, webhook_allow_http=True, webhook_allow_private=True,
                               webhook_timeout_seconds=2.0, webhook_retry_seconds=0.1)


@pytest.fixture
def hstore(hook_settings: Settings) -> JobStore:
    return JobStore.from_settings(hook_settings)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def run_to(store: JobStore, job_id: str, outcome: str = "succeeded") -> int:
    claimed = store.claim(WORKER, 1)
    assert claimed and claimed[0].id == job_id
    attempt = claimed[0].attempt
    store.finish(WORKER, job_id, attempt, outcome, result=Result(b"1", "application/json"),
                 error=JobError("E", "boom", None) if outcome == "failed" else None)
    return attempt


def outbox_len(store: JobStore) -> int:
    return int(store.redis.xlen(store.keys.webhook_outbox))


def drain(d: Dispatcher, until: object, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d.pass_once()
        if until():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


def test_terminal_event_is_delivered_signed_and_recorded_on_the_job(hstore: JobStore, receiver: Receiver) -> None:
    secret = WebhookSecrets(hstore).rotate("default")
    job, _ = hstore.enqueue("echo", {"x": 1}, callback_url=receiver.url)
    assert outbox_len(hstore) == 0  # nothing until the job ends
    run_to(hstore, job.id)
    assert outbox_len(hstore) == 1
    d = Dispatcher(hstore, "d1")
    d._ensure_group()
    drain(d, lambda: receiver.received, what="the webhook")
    headers, body = receiver.received[0]
    payload = Webhook(secret).verify(body, headers)  # raises on a bad signature or stale timestamp
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job.id
    assert headers["webhook-id"] == f"{job.id}:1"
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 32).verify(body, headers)
    got = hstore.get(job.id).to_dict()["webhook"]
    assert got["delivered"] is True and got["attempts"][0]["status_code"] == 200
    assert got["callback_url"] == receiver.url
    assert outbox_len(hstore) == 0  # acknowledged and deleted
    d.pass_once()
    assert len(receiver.received) == 1


def test_retried_while_the_receiver_answers_500_or_is_down(hstore: JobStore, receiver: Receiver) -> None:
    receiver.answer = 500
    job, _ = hstore.enqueue("echo", {}, callback_url=receiver.url)
    run_to(hstore, job.id, "failed")
    d = Dispatcher(hstore, "d1")
    d._ensure_group()
    drain(d, lambda: len(receiver.received) >= 2, what="two answered-500 attempts")
    port = receiver.port
    receiver.stop()  # down: connection refused
    drain(d, lambda: len(hstore.get(job.id).to_dict()["webhook"]["attempts"]) >= 4, what="attempts while down")
    attempts = hstore.get(job.id).to_dict()["webhook"]["attempts"]
    assert any(a["status_code"] is None and a["error"] for a in attempts)
    assert outbox_len(hstore) == 1  # still owed
    up = Receiver(port).start()
    try:
        drain(d, lambda: up.received, timeout=30, what="delivery once back up")
        body = json.loads(up.received[0][1])
        assert body["type"] == "job.failed"
        assert up.events() == [f"{job.id}:1"]
        assert hstore.get(job.id).to_dict()["webhook"]["delivered"] is True
        assert outbox_len(hstore) == 0
    finally:
        up.stop()


def test_no_event_for_a_transition_that_did_not_happen(hstore: JobStore) -> None:
    job, _ = hstore.enqueue("echo", {}, callback_url="http://127.0.0.1:9/hook")
    plain, _ = hstore.enqueue("echo", {})
    attempt = run_to(hstore, job.id)
    # a duplicate finish and a stale one (wrong attempt) change nothing and emit nothing
    assert hstore.finish(WORKER, job.id, attempt, "succeeded", result=Result(b"1", "application/json")) is None
    assert hstore.finish(WORKER, job.id, attempt + 1, "failed", error=JobError("E", "x", None)) is None
    with pytest.raises(IllegalTransition):  # already terminal: no event
        hstore.cancel(job.id)
    run_to(hstore, plain.id)  # no callback: no event
    entries = hstore.redis.xrange(hstore.keys.webhook_outbox)
    assert [e[1][b"event"].decode() for e in entries] == [f"{job.id}:1"]


def test_cancel_and_retry_each_make_their_own_event(hstore: JobStore) -> None:
    queued, _ = hstore.enqueue("echo", {}, callback_url="https://example.com/a")
    hstore.cancel(queued.id)
    failed, _ = hstore.enqueue("echo", {}, callback_url="https://example.com/b", max_attempts=1)
    run_to(hstore, failed.id, "failed")
    hstore.retry(failed.id)
    run_to(hstore, failed.id)
    events = [(e[1][b"event"].decode(), e[1][b"status"].decode())
              for e in hstore.redis.xrange(hstore.keys.webhook_outbox)]
    assert events == [(f"{queued.id}:1", "cancelled"), (f"{failed.id}:1", "failed"), (f"{failed.id}:2", "succeeded")]


def test_a_dead_dispatchers_events_are_claimed_by_another(hstore: JobStore, receiver: Receiver) -> None:
    job, _ = hstore.enqueue("echo", {}, callback_url=receiver.url)
    run_to(hstore, job.id)
    dead = Dispatcher(hstore, "dead")
    dead._ensure_group()
    # 'dead' read the event and crashed before delivering it: pending, owned by it, never acknowledged
    hstore.redis.xreadgroup(WEBHOOK_GROUP, "dead", {hstore.keys.webhook_outbox: ">"}, count=10)
    live = Dispatcher(hstore, "live")
    live.pass_once()
    assert receiver.received == []  # within the dead one's lease: not taken yet
    drain(live, lambda: receiver.received, timeout=live.lease_ms / 1000 + 10, what="claim after the lease")
    assert receiver.events() == [f"{job.id}:1"]


def test_rotation_signs_with_both_secrets_during_the_grace_period(hstore: JobStore, receiver: Receiver) -> None:
    secrets = WebhookSecrets(hstore)
    old = secrets.rotate("default")
    new = secrets.rotate("default")
    assert old != new and new.startswith("whsec_")
    job, _ = hstore.enqueue("echo", {}, callback_url=receiver.url)
    run_to(hstore, job.id)
    d = Dispatcher(hstore, "d1")
    d._ensure_group()
    drain(d, lambda: receiver.received, what="the webhook")
    headers, body = receiver.received[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, headers)
    Webhook(new).verify(body, headers)
    # grace over: only the new one signs
    assert secrets.signing("default", hstore.redis_now_ms() + 10**9) == [new]


def test_unsafe_destinations_are_refused_and_never_called(hook_settings: Settings, receiver: Receiver) -> None:
    strict = JobStore.from_settings(dataclasses.replace(hook_settings, webhook_allow_private=False))
    job, _ = strict.enqueue("echo", {}, callback_url=receiver.url.replace("127.0.0.1", "localhost"))
    run_to(strict, job.id)
    d = Dispatcher(strict, "d1")
    d._ensure_group()
    drain(d, lambda: strict.get(job.id).to_dict()["webhook"]["attempts"], what="the refusal")
    attempt = strict.get(job.id).to_dict()["webhook"]["attempts"][0]
    assert attempt["status_code"] is None and "non-public" in attempt["error"]
    assert receiver.received == [] and outbox_len(strict) == 0  # refused for good, not retried


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http://example.com/x", "https://user:pw@example.com/",
                                 "https:///nohost", "https://exa mple.com/", "https://example.com:99999/",
                                 "javascript:alert(1)", "https://" + "a" * 3000 + ".com/"])
def test_check_url_refuses_bad_shapes(url: str) -> None:
    with pytest.raises(UnsafeWebhookUrl):
        check_url(url, allow_http=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "[::1]",
                                  "[::ffff:127.0.0.1]", "[fe80::1]", "224.0.0.1", "0.0.0.0", "100.64.0.1"])
def test_non_public_addresses_are_refused_unless_allowed(host: str) -> None:
    target = check_url(f"https://{host}/hook", allow_http=False)
    with pytest.raises(UnsafeWebhookUrl):
        check_literal(target, allow_private=False)
    with pytest.raises(UnsafeWebhookUrl):
        resolve(target, allow_private=False)
    check_literal(target, allow_private=True)


def test_public_address_passes_and_is_the_one_connected_to() -> None:
    target = check_url("https://93.184.215.14:8443/x?y=1", allow_http=False)
    assert (target.host, target.port, target.path) == ("93.184.215.14", 8443, "/x?y=1")
    assert resolve(target, allow_private=False) == "93.184.215.14"  # a literal: no DNS, the checked address


def _due(store: JobStore) -> dict[str, float]:
    """Outbox entry id -> ms until its next attempt (the shared schedule in Redis)."""
    now = store.redis_now_ms()
    return {e.decode(): score - now for e, score in store.redis.zrange(store.keys.webhook_due, 0, -1, withscores=True)}


def test_the_retry_schedule_lives_in_redis_and_survives_the_dispatcher(hook_settings: Settings,
                                                                        receiver: Receiver) -> None:
    """Backoff and attempt count are stored with the event in the step that records the attempt: a dispatcher
    that takes over (the first one died) keeps the schedule, and no dispatcher retries on its own clock."""
    store = JobStore.from_settings(dataclasses.replace(hook_settings, webhook_retry_seconds=30.0))
    receiver.answer = 500
    job, _ = store.enqueue("echo", {}, callback_url=receiver.url)
    run_to(store, job.id)
    first = Dispatcher(store, "first")
    first._ensure_group()
    assert first.pass_once() == 1 and len(receiver.received) == 1
    (eid, wait_ms), = _due(store).items()
    assert 28_000 < wait_ms <= 30_000  # next attempt 30 s (the base) after the first failure
    assert store.redis.hget(store.keys.webhook_attempts, eid) == b"1"
    # 'first' is gone; its successor and any other dispatcher see the same schedule: nothing is due
    successor, other = Dispatcher(store, "successor"), Dispatcher(store, "other")
    assert successor.pass_once() == 0 and other.pass_once() == 0 and first.pass_once() == 0
    assert len(receiver.received) == 1
    store.redis.zadd(store.keys.webhook_due, {eid: 0})  # the 30 s are over
    assert successor.pass_once() == 1 and other.pass_once() == 0
    assert len(receiver.received) == 2
    assert 58_000 < _due(store)[eid] <= 60_000  # doubled, counted from the second attempt
    assert store.redis.hget(store.keys.webhook_attempts, eid) == b"2"
    receiver.answer = 204
    store.redis.zadd(store.keys.webhook_due, {eid: 0})
    assert other.pass_once() == 1
    assert receiver.events() == [f"{job.id}:1"] * 3
    assert _due(store) == {} and store.redis.hlen(store.keys.webhook_attempts) == 0 and outbox_len(store) == 0
    assert store.get(job.id).to_dict()["webhook"]["delivered"] is True


def test_an_event_past_its_deadline_is_given_up(hook_settings: Settings, receiver: Receiver) -> None:
    """Deadline semantics: an event not delivered within JOBS_WEBHOOK_DEADLINE_SECONDS of its transition is
    given up at its next attempt (recorded on the job, removed from the outbox and the schedule)."""
    store = JobStore.from_settings(dataclasses.replace(hook_settings, webhook_deadline_seconds=1.0,
                                                       webhook_retry_seconds=30.0))
    receiver.answer = 500
    job, _ = store.enqueue("echo", {}, callback_url=receiver.url)
    run_to(store, job.id)
    d = Dispatcher(store, "d1")
    d._ensure_group()
    assert d.pass_once() == 1
    time.sleep(1.1)  # the deadline passes
    (eid, _), = _due(store).items()
    store.redis.zadd(store.keys.webhook_due, {eid: 0})
    assert d.pass_once() == 1
    assert len(receiver.received) == 1  # not attempted again
    attempts = store.get(job.id).to_dict()["webhook"]["attempts"]
    assert attempts[-1]["error"] == "deadline passed: given up"
    assert _due(store) == {} and outbox_len(store) == 0
