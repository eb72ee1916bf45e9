"""Group commit of concurrent enqueues (``jobs_core.group_commit``) on a real, private Redis.

The round trip in flight is held deterministically with ``CLIENT PAUSE WRITE`` (Redis postpones the
leader's script), so the calls that arrive meanwhile are known to wait for, and ride, the next one: as ONE
call of ``lua/enqueue.lua`` carrying every submission, each admitted or refused on its own.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from jobs_core import scripts
from jobs_core.config import Settings
from jobs_core.errors import IdempotencyConflict, QueueFull
from jobs_core.model import Submission
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


def _calls(admin: redis.Redis) -> Counter[str]:
    """Commands Redis ran so far, by name (``INFO commandstats``; scripts' inner commands included)."""
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in admin.info("commandstats").items()})


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
    # those lone calls went to ENQUEUE_ONE: the grouped script cached too, as in any running API (no NOSCRIPT)
    admin.script_load(scripts.ENQUEUE)
    trips, calls = group.round_trips, group.calls
    before = _calls(admin)

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
            # the queue's cap: 2 + 1 + 6 queued when it is checked, so the first fits, the second is refused
            lambda: store.enqueue("t", {"i": 10}, max_pending=10),
            lambda: store.enqueue("t", {"i": 11}, max_pending=10),
        ]
        threads += [_run(fn, out, n) for n, fn in enumerate(calls_of_group, start=1)]
        _until(lambda: len(group._queue) == 1 + len(calls_of_group), "every call to queue up")
        assert _postponed_scripts(admin) == 1  # nothing else was sent meanwhile
    finally:
        admin.client_unpause()
    for t in threads:
        t.join(15)

    assert (group.round_trips - trips, group.calls - calls) == (2, 12)  # the leader's, then all eleven at once
    ran = _calls(admin) - before
    assert ran["evalsha"] == 2  # ONE script call for the eleven submissions of the group
    # shared by the group: one index ZADD and one owner-index ZADD per tenant, one RPUSH to the waiting list
    # (+ its wake token once), one INCRBY of the sequence, one XADD of every job's event (one stream entry
    # per script call, includes/emit.lua); per job its record
    assert ran["zadd"] == 2 * 2 and ran["incrby"] == 2 and ran["rpush"] <= 2 + 1
    # per job its record: at least the 1 + 7 created ones (commandstats count every client of the server:
    # a fresh-clone CI run once saw one HSET more, with every shared count above exact; the records
    # themselves are checked below)
    assert ran["hset"] >= 1 + 7 and ran["xadd"] == 2
    first, created = out[0]
    assert created and first.status.value == "queued"
    plain = [out[n] for n in range(1, 7)]
    assert all(created for _, created in plain)
    assert sorted(job.params["i"] for job, _ in plain) == [1, 2, 3, 4, 5, 6]
    replayed, created = out[7]
    assert not created and replayed.id == first.id
    assert isinstance(out[8], IdempotencyConflict)
    assert isinstance(out[9], QueueFull) and out[9].scope == "tenant"
    fits, created = out[10]
    assert created and fits.params == {"i": 10}
    made = [first.id, *(job.id for job, _ in plain), fits.id]
    assert admin.exists(*(store.keys.job(i) for i in made)) == 1 + 7
    assert isinstance(out[11], QueueFull) and out[11].scope == "global"
    # stored exactly once each: 8 new jobs of tenant "default" queued, nothing for the refused ones
    ids = {first.id, fits.id, *(job.id for job, _ in plain)}
    assert len(ids) == 8
    queued = [x.decode().strip('"') for x in admin.lrange(store.keys.queue, 0, -1)]
    assert sorted(queued[2:]) == sorted(ids) and len(queued) == 2 + 8
    assert int(admin.hget(store.keys.pending, "default") or 0) == 8
    # sequence numbers: distinct, consecutive, and the index holds each job once
    seqs = sorted(store.get(i).seq for i in ids)
    assert seqs == list(range(seqs[0], seqs[0] + 8))
    assert admin.zcard(store.keys.index) == 2 + 8
    assert int(admin.hget(store.keys.pending, "capped") or 0) == 2


def test_a_lone_call_is_sent_at_once_on_its_own_thread(private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    group = store._enqueue
    trips, calls = group.round_trips, group.calls
    for i in range(5):
        store.enqueue("t", {"i": i})
    assert (group.round_trips - trips, group.calls - calls) == (5, 5)


def _script_call(admin: redis.Redis, store: JobStore, parts: list[tuple[str, list[Any]]],
                 queues: list[str]) -> list[Any]:
    """``ENQUEUE`` called by hand: ``parts`` = (owner, header after the owner, then 8 arguments per job)."""
    k = store.keys
    keys: list[Any] = [k.index, k.pending, k.seq, k.queues, *(x for q in queues for x in store._queue_block(q)[0])]
    args: list[Any] = [k.job_prefix, len(queues), len(parts), 60,
                       *(a for q in queues for a in store._queue_block(q)[1])]
    for owner, rest in parts:
        keys += [k.owner_index(owner), k.idempotency(owner, "-")]
        args += [owner, *rest]
    return list(admin.eval(scripts.ENQUEUE, len(keys), *keys, *args))


def test_an_invalid_submission_is_refused_alone_and_writes_nothing(private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)

    def job(job_id: str, queue_number: Any = 1, priority: Any = 5, delay: Any = 0) -> list[Any]:
        return [job_id, "t", "{}", 3, 60.0, delay, queue_number, priority]

    def header(n: int) -> list[Any]:
        return [0, 0, "0", "", n, "", "", ""]  # ... traceparent, callback, reply_to

    # ids must look like job ids only to the API; the script takes them as they come
    replies = _script_call(admin, store, [
        ("a", [*header(1), *job("j-ok-1")]),
        ("a", [*header(2), *job("j-bad-1"), *job("j-bad-2", queue_number=7)]),  # no 7th queue in the call
        ("a", [*header(1), *job("j-bad-3", priority=12)]),
        ("a", [*header(1), *job("j-bad-4", delay="soon")]),
        ("b", [*header(2), *job("j-ok-2", priority=9), *job("j-ok-3", delay=5000)]),
    ], ["g"])
    kinds = [r[0].decode() for r in replies]
    assert kinds == ["ok", "invalid", "invalid", "invalid", "ok"], replies
    assert b"queue" in replies[1][1] and b"priority" in replies[2][1] and b"delay" in replies[3][1]
    assert [len(r) for r in (replies[0], replies[4])] == [3, 4]  # created_ms + one seq per job
    for bad in ("j-bad-1", "j-bad-2", "j-bad-3", "j-bad-4"):  # the refused submissions left no trace
        assert not admin.exists(store.keys.job(bad))
        assert admin.zscore(store.keys.index, bad) is None
    assert {x.decode() for x in admin.lrange(store.keys.queue, 0, -1)} == {'"j-ok-1"'}
    assert admin.lrange(store.keys.waiting(9), 0, -1) == [b'"j-ok-2"']
    assert admin.zrange(store.keys.delayed, 0, -1) == [b"j-ok-3"]
    assert {k.decode(): int(v) for k, v in admin.hgetall(store.keys.pending).items()} == {"a": 1, "b": 2}
    assert admin.hget(store.keys.job("j-ok-3"), "run_at") is not None

    # a call whose layout is broken (a job count past its arguments) refuses what it cannot read, no error
    replies = _script_call(admin, store, [("a", [*header(1), *job("j-ok-4")]), ("a", [*header(3), *job("j-x")])],
                           ["g"])
    assert [r[0] for r in replies] == [b"ok", b"invalid"]
    assert not admin.exists(store.keys.job("j-x"))


def test_a_resent_group_is_answered_as_its_first_run_and_stores_nothing_twice(private_redis: RedisServer) -> None:
    """What redis-py does after a lost reply: the very same call again. Submissions it admitted answer as
    then (same seqs); one it refused is decided again."""
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)

    def part(owner: str, owner_cap: int, *ids: str) -> tuple[str, list[Any]]:
        jobs = [a for i in ids for a in (i, "t", "{}", 3, 60.0, 0, 1, 5)]
        return owner, [0, owner_cap, "0", "", len(ids), "", "", "", *jobs]

    call = [part("a", 0, "r-1", "r-2"), part("b", 1, "r-3", "r-4"), part("a", 0, "r-5")]
    first = _script_call(admin, store, call, ["g"])
    assert [r[0] for r in first] == [b"ok", b"full", b"ok"]
    again = _script_call(admin, store, call, ["g"])
    assert again == first
    assert admin.llen(store.keys.queue) == 3 and admin.zcard(store.keys.index) == 3
    assert int(admin.hget(store.keys.pending, "a") or 0) == 3
    admin.hset(store.keys.pending, "b", -1)  # room for tenant b's two now: the re-send admits them, once
    again = _script_call(admin, store, call, ["g"])
    assert again[0] == first[0] and again[2] == first[2] and again[1][0] == b"ok"
    assert admin.llen(store.keys.queue) == 5 and admin.zcard(store.keys.index) == 5


def test_a_batch_shares_its_writes_and_keeps_all_or_none(private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)
    store.enqueue("t", {"warm": 1})
    admin.script_load(scripts.ENQUEUE)  # the warm-up went to ENQUEUE_ONE (a lone job)
    items = [Submission("t", {"i": i}, priority=9 if i % 10 == 0 else 5, delay=60 if i == 7 else 0)
             for i in range(100)]
    before = _calls(admin)
    jobs, created = store.enqueue_many(items, owner="bulk", max_pending_per_tenant=100)
    ran = _calls(admin) - before
    assert created and [j.params["i"] for j in jobs] == list(range(100))
    # one script call; per job only its record; the rest (the events' one stream entry included) once per
    # call, list, index or tenant (+ 1 HSET: the queue control hash's 'delayed' due-time field, for the one
    # delayed job, once per call)
    assert ran["evalsha"] == 1 and ran["hset"] == 100 + 1 and ran["xadd"] == 1
    # two waiting lists (p9, p5); the empty p9 list asks for a wake token, but the warm-up's is still there
    assert ran["rpush"] == 2 and ran["llen"] == 1
    assert ran["zadd"] == 3 and ran["incrby"] == 1 and ran["hincrby"] == 1 and "exists" not in ran
    assert admin.llen(store.keys.waiting(9)) == 10
    assert admin.llen(store.keys.queue) == 1 + 89 and admin.zcard(store.keys.delayed) == 1
    assert admin.llen(store.keys.wake) == 1
    assert [j.seq for j in jobs] == list(range(jobs[0].seq, jobs[0].seq + 100))
    assert [store.get(j.id).seq for j in jobs[::33]] == [j.seq for j in jobs[::33]]
    # all or none: one job past the tenant's cap refuses the whole batch
    try:
        store.enqueue_many([Submission("t", {"over": 1})], owner="bulk", max_pending_per_tenant=100)
        raise AssertionError("expected QueueFull")
    except QueueFull as e:
        assert e.scope == "tenant"
    assert int(admin.hget(store.keys.pending, "bulk") or 0) == 100


def test_a_batch_longer_than_one_variadic_command_takes_is_stored_whole(private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)
    jobs, _ = store.enqueue_many([Submission("t", {"i": i}) for i in range(5000)], owner="bulk")
    assert admin.llen(store.keys.queue) == 5000 and admin.zcard(store.keys.index) == 5000
    queued = [x.decode().strip('"') for x in admin.lrange(store.keys.queue, 0, -1)]
    assert queued == [j.id for j in jobs]  # in the order sent
    assert admin.llen(store.keys.wake) == 1


def test_idempotent_batches_and_singles_in_one_group(private_redis: RedisServer) -> None:
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)
    group = store._enqueue
    store.enqueue("t", {"warm": 1})
    out: dict[int, Any] = {}
    admin.client_pause(10_000, all=False)
    try:
        threads = [_run(lambda: store.enqueue("t", {"lead": 1}), out, 0)]
        _until(lambda: _postponed_scripts(admin) == 1, "the leader's round trip to be held")
        batch = [Submission("t", {"b": i}) for i in range(3)]
        fns: list[Callable[[], Any]] = [
            lambda: store.enqueue_many(batch, owner="x", idempotency_key="imp"),
            lambda: store.enqueue_many(batch, owner="x", idempotency_key="imp"),  # its repeat: the same jobs
            lambda: store.enqueue_many(batch[:2], owner="x", idempotency_key="imp"),  # other batch: conflict
            lambda: store.enqueue_many([Submission("t", {"c": 1}), Submission("t", {"c": 2}, queue="other")],
                                       owner="y"),
            lambda: store.enqueue("t", {"d": 1}, owner="y", idempotency_key="imp"),  # another tenant's key
        ]
        for n, fn in enumerate(fns, start=1):
            threads.append(_run(fn, out, n))
            _until(lambda n=n: len(group._queue) == 1 + n, "the calls to queue up in order")
    finally:
        admin.client_unpause()
    for t in threads:
        t.join(15)
    assert group.calls - group.round_trips >= 4  # the five rode one call
    first, created = out[1]
    assert created and [j.params for j in first] == [{"b": 0}, {"b": 1}, {"b": 2}]
    replay, created = out[2]
    assert not created and [j.id for j in replay] == [j.id for j in first]
    assert isinstance(out[3], IdempotencyConflict)
    mixed, created = out[4]
    assert created and [j.queue for j in mixed] == ["g", "other"]
    assert admin.llen(store.keys.for_queue("other").queue) == 1
    single, created = out[5]
    assert created and single.owner == "y"
    assert {k.decode(): int(v) for k, v in admin.hgetall(store.keys.pending).items()} == {
        "default": 2, "x": 3, "y": 3}


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


def test_the_queue_cap_counts_every_priority_paused_and_delayed_job(private_redis: RedisServer) -> None:
    """A lone submission's cap (lua/enqueue_one.lua) counts the job's own list by its push's reply, the
    delayed set and, only when one of the 19 other lists exists, each of those: exact either way (the
    grouped script's pending_in, lua/includes/queues.lua: tests/core/test_enqueue_one.py compares them)."""
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="g", queue="g"))
    admin = redis.Redis.from_url(private_redis.url)
    store.enqueue("t", {"p5": 1})
    store.enqueue("t", {"later": 1}, delay=60)
    before = _calls(admin)
    store.enqueue("t", {"p5": 2}, max_pending=3)  # 2 pending + 1 fits
    ran = _calls(admin) - before
    # one EXISTS over the other lists and the delayed set, whose ZCARD it then needs (the only key found):
    # no list counted; a first send skips the re-send check
    assert "llen" not in ran and ran["zcard"] == 1 and ran["exists"] == 1
    try:
        store.enqueue("t", {"over": 1}, max_pending=3)
        raise AssertionError("expected QueueFull")
    except QueueFull as e:
        assert e.scope == "global"
    store.enqueue("t", {"p9": 1}, priority=9)  # another priority's list now exists: counted too
    for cap, fits in ((4, False), (5, True), (5, False)):
        try:
            store.enqueue("t", {"cap": cap}, max_pending=cap)
            assert fits, cap
        except QueueFull:
            assert not fits, cap
    assert store.pause_queue("g")  # the waiting lists move to the paused ones: still counted
    assert admin.llen(store.keys.paused(9)) == 1 and not admin.exists(store.keys.waiting(9))
    for cap, fits in ((5, False), (6, True)):
        try:
            store.enqueue("t", {"paused": cap}, max_pending=cap)
            assert fits, cap
        except QueueFull:
            assert not fits, cap
    assert admin.zcard(store.keys.index) == 6


def test_redis_killed_while_groups_are_in_flight_every_acknowledged_submission_is_stored_once(
        tmp_path: Path) -> None:
    """Threads of one process submit singles and small batches (grouped into shared script calls) while
    Redis is SIGKILLed and restarted from its AOF (``always``: an answer means on disk)."""
    server = RedisServer(tmp_path / "r", appendfsync="always").start()
    try:
        store = JobStore.from_settings(Settings(redis_url=server.url, key_prefix="g", queue="g"))
        acked: list[str] = []  # ids of acknowledged jobs
        failed = Counter[str]()
        lock = threading.Lock()
        progress = threading.Semaphore(0)

        def producer(t: int) -> None:
            for i in range(60):
                try:
                    if i % 3 == 0:
                        jobs, _ = store.enqueue_many([Submission("t", {"t": t, "i": i, "k": k}) for k in range(3)],
                                                     owner=f"o{t % 2}")
                        ids = [j.id for j in jobs]
                    else:
                        ids = [store.enqueue("t", {"t": t, "i": i, "k": 0}, owner=f"o{t % 2}")[0].id]
                    with lock:
                        acked.extend(ids)
                except redis.RedisError as e:
                    with lock:
                        failed[type(e).__name__] += 1
                progress.release()

        threads = [threading.Thread(target=producer, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for _ in range(80):  # some submissions are through, more are in flight
            progress.acquire(timeout=30)
        server.kill()
        time.sleep(1.5)  # longer than the client's retries: the calls in flight fail ...
        server.start()  # ... and the later ones find it again, restarted from its AOF
        for t in threads:
            t.join(120)

        admin = server.client()
        assert len(acked) >= 80 and sum(failed.values()) > 0, failed  # the kill met submissions in flight
        records = {}
        for key in admin.scan_iter("g:job:*", count=1000):
            params = admin.hget(key, "params")
            if params is not None:
                records[key.decode().rsplit(":", 1)[1]] = params
        missing = set(acked) - set(records)
        assert not missing, f"{len(missing)} acknowledged jobs are not stored"
        # none stored twice: each (thread, submission, item) at most once, and each id queued once
        assert max(Counter(records.values()).values()) == 1
        queued = [x.decode().strip('"') for x in admin.lrange(store.keys.queue, 0, -1)]
        assert len(queued) == len(set(queued)) == len(records)
        assert sum(int(v) for v in admin.hvals(store.keys.pending)) == len(records)
        assert admin.zcard(store.keys.index) == len(records)
    finally:
        server.stop()
