"""Group commit of concurrent enqueues (``jobs_core.group_commit``) on a real, private Redis.

The round trip in flight is held deterministically with ``CLIENT PAUSE WRITE`` (Redis postpones the
leader's script), so the calls that arrive meanwhile are known to wait for, and ride, the next one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from jobs_core.config import Settings
from jobs_core.errors import IdempotencyConflict, QueueFull
from jobs_core.store import JobStore
from support.redis_server import RedisServer


def _until(cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _postponed_scripts(admin: redis.Redis) -> int:
    """Clients whose EVALSHA Redis holds back (paused)."""
    return sum(1 for c in admin.client_list() if c.get("cmd") == "evalsha" and "b" in c.get("flags", ""))


def _run(fn: Callable[[], Any], out: dict[int, Any], i: int) -> threading.Thread:
    def target() -> None:
        try:
            out[i] = fn()
        except Exception as e:  # the test inspects each call's outcome
            out[i] = e

    t = threading.Thread(target=target)
    t.start()
    return t


def test_calls_arriving_during_a_round_trip_share_the_next_one_each_with_its_own_answer(
        private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)
    group = store._enqueue
    for i in range(2):  # tenant "capped" is at its cap of 2 before the group
        store.enqueue("t", {"pre": i}, owner="capped", max_pending_per_tenant=2)
    trips, calls = group.round_trips, group.calls

    out: dict[int, Any] = {}
    admin.client_pause(10_000, all=False)  # WRITE: the next script waits in Redis until unpaused
    try:
        threads = [_run(lambda: store.enqueue("t", {"i": 0}, idempotency_key="k1"), out, 0)]
        _until(lambda: _postponed_scripts(admin) == 1, "the leader's round trip to be held")
        calls_of_group: list[Callable[[], Any]] = [
            *(lambda i=i: store.enqueue("t", {"i": i}) for i in range(1, 7)),  # six plain submissions
            lambda: store.enqueue("t", {"i": 0}, idempotency_key="k1"),  # the leader's re-send: its job
            lambda: store.enqueue("t", {"i": 99}, idempotency_key="k1"),  # same key, other body: conflict
            lambda: store.enqueue("t", {"i": 8}, owner="capped", max_pending_per_tenant=2),  # over its cap
        ]
        threads += [_run(fn, out, n) for n, fn in enumerate(calls_of_group, start=1)]
        _until(lambda: len(group._queue) == 1 + len(calls_of_group), "every call to queue up")
        assert _postponed_scripts(admin) == 1  # nothing else was sent meanwhile
    finally:
        admin.client_unpause()
    for t in threads:
        t.join(15)

    assert (group.round_trips - trips, group.calls - calls) == (2, 10)  # the leader's, then all nine at once
    first, created = out[0]
    assert created and first.status.value == "queued"
    plain = [out[n] for n in range(1, 7)]
    assert all(created for _, created in plain)
    assert sorted(job.params["i"] for job, _ in plain) == [1, 2, 3, 4, 5, 6]
    replayed, created = out[7]
    assert not created and replayed.id == first.id
    assert isinstance(out[8], IdempotencyConflict)
    assert isinstance(out[9], QueueFull) and out[9].scope == "tenant"
    # stored exactly once each: 7 new jobs of tenant "default" queued, nothing for the refused ones
    ids = {first.id, *(job.id for job, _ in plain)}
    assert len(ids) == 7
    queued = [x.decode().strip('"') for x in admin.lrange(store.keys.queue, 0, -1)]
    assert sorted(queued[2:]) == sorted(ids) and len(queued) == 2 + 7
    assert int(admin.hget(store.keys.pending, "default") or 0) == 7
    assert int(admin.hget(store.keys.pending, "capped") or 0) == 2


def test_a_lone_call_is_sent_at_once_on_its_own_thread(private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    group = store._enqueue
    trips, calls = group.round_trips, group.calls
    for i in range(5):
        store.enqueue("t", {"i": i})
    assert (group.round_trips - trips, group.calls - calls) == (5, 5)


def test_a_script_flushed_from_redis_is_loaded_again_for_a_whole_group(private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)
    store.enqueue("t", {"warm": 1})
    group = store._enqueue
    commit = group._commit

    def flush_first(calls: list[Any]) -> None:  # as a restarted Redis would: its script cache is empty
        if len(calls) > 1:
            admin.script_flush()
        commit(calls)

    group._commit = flush_first  # type: ignore[method-assign]
    out: dict[int, Any] = {}
    admin.client_pause(10_000, all=False)
    try:
        threads = [_run(lambda: store.enqueue("t", {"i": 0}), out, 0)]
        _until(lambda: _postponed_scripts(admin) == 1, "the leader's round trip to be held")
        threads += [_run(lambda i=i: store.enqueue("t", {"i": i}), out, i) for i in range(1, 6)]
        _until(lambda: len(group._queue) == 6, "every call to queue up")
    finally:
        admin.client_unpause()
    for t in threads:
        t.join(15)
    assert all(not isinstance(v, Exception) for v in out.values()), out
    assert sorted(job.params["i"] for job, _ in out.values()) == [0, 1, 2, 3, 4, 5]
    assert admin.llen(store.keys.queue) == 7  # each stored once: the calls that met NOSCRIPT had not run


def test_redis_gone_mid_round_trip_every_call_of_the_group_fails_and_the_next_call_works(
        tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r").start()
    try:
        settings = Settings(redis_url=server.url, key_prefix="g", queue="g")
        store = JobStore.from_settings(settings)
        admin = redis.Redis.from_url(server.url)
        store.enqueue("t", {"warm": 1})
        out: dict[int, Any] = {}
        admin.client_pause(10_000, all=False)
        threads = [_run(lambda: store.enqueue("t", {"i": 0}), out, 0)]
        _until(lambda: _postponed_scripts(admin) == 1, "the leader's round trip to be held")
        threads += [_run(lambda i=i: store.enqueue("t", {"i": i}), out, i) for i in range(1, 6)]
        _until(lambda: len(store._enqueue._queue) == 6, "every call to queue up")
        server.kill()  # nothing ran (paused) and nothing can be re-sent (the retries find no server)
        for t in threads:
            t.join(30)
        assert all(isinstance(v, redis.ConnectionError) for v in out.values()), out
        assert not store._enqueue._queue and not store._enqueue._leading  # ready for the next calls
        server.start()  # empty (no persistence): the next call works, through a new connection
        job, created = store.enqueue("t", {"after": 1})
        assert created and store.get(job.id).params == {"after": 1}
    finally:
        server.stop()
