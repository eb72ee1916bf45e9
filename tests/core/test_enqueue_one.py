"""The lone submission's script (``lua/enqueue_one.lua``) against the grouped one (``lua/enqueue.lua``).

A group of one submission of one job goes to ``ENQUEUE_ONE`` (``jobs_core.group_commit``). The same sequence
of submissions — priorities, a delay, a paused queue, a new queue, trace / callback / reply channel,
Idempotency-Key first use, repeat and conflict, both caps admitted and refused with every mix of lists —
is run on two databases of one private Redis, once through the lone script and once with it switched off
(every call through ``ENQUEUE``), and must leave the very same data behind (records, lists, indexes,
counters, control hashes, idempotency keys, event stream) and get the very same answers. Job ids, times
and the reply channel name differ between the runs by nature and are compared by position.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from jobs_core import scripts
from jobs_core.config import Settings
from jobs_core.errors import IdempotencyConflict, QueueFull
from jobs_core.event_stream import job_events
from jobs_core.model import Job
from jobs_core.store import JobStore
from support.redis_server import RedisServer

#: hash fields and zsets that hold Redis clock times (ms): equal between runs only as "a time"
_TIMES = {"created_at", "run_at", "delayed"}


def _stores(server: RedisServer) -> tuple[JobStore, JobStore]:
    """(lone, grouped): the same settings on databases 1 and 2; the second never uses ``ENQUEUE_ONE``."""
    def store(db: int) -> JobStore:
        return JobStore.from_settings(Settings(redis_url=server.url[:-1] + str(db), key_prefix="p", queue="p"))

    lone, grouped = store(1), store(2)
    grouped._enqueue.lone = None
    return lone, grouped


def _snapshot(r: redis.Redis, names: dict[str, str]) -> dict[str, Any]:
    """Every key of the database and what it holds, with the run's own names (``names``: job ids, reply
    channel) replaced by their position and times by ``T``."""
    def norm(x: Any) -> str:
        s = x.decode() if isinstance(x, bytes) else str(x)
        for real, placeholder in names.items():
            s = s.replace(real, placeholder)
        return s

    out: dict[str, Any] = {}
    for key in r.scan_iter(count=1000):
        kind, name = r.type(key).decode(), norm(key)
        value: Any
        if kind == "string":
            value = (norm(r.get(key)), r.ttl(key) > 0)
        elif kind == "hash":
            value = {norm(f): "T" if norm(f) in _TIMES else norm(v) for f, v in r.hgetall(key).items()}
        elif kind == "list":
            value = [norm(x) for x in r.lrange(key, 0, -1)]
        elif kind == "set":
            value = sorted(norm(x) for x in r.smembers(key))
        elif kind == "zset":
            timed = name.endswith("delayed")
            value = [(norm(m), "T" if timed else s) for m, s in r.zrange(key, 0, -1, withscores=True)]
        else:
            assert kind == "stream", (name, kind)
            value = [[{k: norm(v) for k, v in e.items()} for e in job_events(f)] for _, f in r.xrange(key)]
        out[name] = value
    return out


def _outcome(call: Callable[[], Any], ids: list[str]) -> Any:
    """What a submission answered: created or not and the job's position among the run's jobs, or the error."""
    try:
        job, created = call()
    except (QueueFull, IdempotencyConflict) as e:
        return type(e).__name__, getattr(e, "scope", "")
    if job.id not in ids:
        ids.append(job.id)
    return created, ids.index(job.id), job.status.value, job.queue, job.priority, job.run_at is not None


def _sequence(store: JobStore) -> list[Callable[[], Any]]:
    """The submissions, with every branch of the lone script and its refusals."""
    e = store.enqueue
    capped: Callable[..., Any] = lambda cap, **kw: e("t", {"cap": cap, **kw}, max_pending=cap)  # noqa: E731
    return [
        lambda: e("t", {"i": 0}),
        lambda: e("t", {"i": 1}, priority=9, max_attempts=7, timeout=12.5),
        lambda: e("t", {"i": 2}, delay=30),
        lambda: e("t", {"i": 3}, callback_url="https://example.com/hook", reply=True),
        lambda: e("t", {"i": 4}, idempotency_key="k"),
        lambda: e("t", {"i": 4}, idempotency_key="k"),  # a repeat: the first job
        lambda: e("t", {"i": 5}, idempotency_key="k"),  # another body: a conflict
        # queue p: 4 lists entries of two priorities + 1 delayed = 5 pending (the counting branch)
        lambda: capped(6), lambda: capped(6), lambda: capped(7, delay=1), lambda: capped(7, delay=1),
        # a fresh queue, default priority only: the push's reply is its count (the EXISTS-only branch)
        lambda: e("t", {"f": 0}, queue="fresh", max_pending=2),
        lambda: e("t", {"f": 1}, queue="fresh", max_pending=2),
        lambda: e("t", {"f": 2}, queue="fresh", max_pending=2),  # refused: the push is taken back
        lambda: e("t", {"f": 3}, queue="fresh", max_pending=3, priority=2),
        lambda: e("t", {"f": 4}, queue="fresh", max_pending=3),  # other lists exist now: counted
        # only the delayed set besides the job's list: its ZCARD, no list counted
        lambda: e("t", {"l": 0}, queue="late", delay=9),
        lambda: e("t", {"l": 1}, queue="late", max_pending=2),
        lambda: e("t", {"l": 2}, queue="late", max_pending=2),
        # the tenant's cap, also refused after its push to an empty list (the list must not stay behind)
        lambda: e("t", {"o": 0}, owner="o", max_pending_per_tenant=1),
        lambda: e("t", {"o": 1}, owner="o", max_pending_per_tenant=1),
        lambda: e("t", {"o": 2}, owner="o", queue="empty", max_pending=5, max_pending_per_tenant=1),
        lambda: e("t", {"o": 3}, owner="o", delay=5, max_pending_per_tenant=1),
        # a paused queue: to the paused list, counted by the cap, no wake token
        lambda: (store.pause_queue("p"), e("t", {"paused": 0}, max_pending=20))[1],
        lambda: e("t", {"paused": 1}, priority=9, max_pending=20),
        lambda: (store.resume_queue("p"), e("t", {"resumed": 0}))[1],
    ]


def test_a_lone_submission_leaves_what_the_grouped_script_leaves_and_answers_the_same(
        private_redis: RedisServer) -> None:
    lone, grouped = _stores(private_redis)
    sent_alone = 0
    build = lone._enqueue_one_call

    def counting(part: Any) -> Any:
        nonlocal sent_alone
        call = build(part)
        sent_alone += call is not None
        return call

    assert lone._enqueue.lone is not None
    lone._enqueue.lone = (lone._enqueue.lone[0], counting)
    runs = []
    for store in (lone, grouped):
        ids: list[str] = []
        outcomes = [_outcome(call, ids) for call in _sequence(store)]
        names = {job_id: f"J{n}" for n, job_id in enumerate(ids)}
        names[store.reply_channel() or "-"] = "REPLY"
        runs.append((outcomes, _snapshot(store.redis, names)))
    (outcomes, data), (expected_outcomes, expected_data) = runs
    assert sent_alone == len(outcomes)  # every submission above went through ENQUEUE_ONE
    assert outcomes == expected_outcomes
    assert [o[0] for o in outcomes].count("QueueFull") == 8 and ("IdempotencyConflict", "") in outcomes
    assert data == expected_data
    assert data["p:job:J3"]["callback"] == "https://example.com/hook" and data["p:job:J3"]["reply_to"] == "REPLY"
    assert "empty" not in " ".join(data)  # the refused push to an empty list left no key


@pytest.mark.parametrize("caps", [{}, {"max_pending": 100_000, "max_pending_per_tenant": 10_000}])
def test_a_lone_submission_costs_nine_commands_and_the_caps_one_more(private_redis: RedisServer,
                                                                      caps: dict[str, int]) -> None:
    """The caps (the API passes both on every submission) cost one EXISTS, not the grouped script's ZCARD +
    LLEN + EXISTS + HGET: the push's and the pending HINCRBY's replies are the counts."""
    store, _ = _stores(private_redis)
    admin = private_redis.client()
    store.enqueue("t", {"warm": 1})  # the queue known, the script cached
    store.enqueue("t", {"warm": 2})  # the list not empty: no wake token below
    before = Counter({k: int(v["calls"]) for k, v in admin.info("commandstats").items()})
    store.enqueue("t", {"i": 1}, **caps)
    ran = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in admin.info("commandstats").items()})
    ran -= Counter({k.removeprefix("cmdstat_"): v for k, v in before.items()})
    ran.pop("info", None)
    assert ran == Counter({"evalsha": 1, "hmget": 1, "rpush": 1, "hincrby": 1, "incrby": 1, "hset": 1, "zadd": 2,
                           "xadd": 1, **({"exists": 1} if caps else {})})


def _lone_call(server: RedisServer) -> tuple[JobStore, redis.Redis, Job, list[Any], list[Any]]:
    """A store, a client, and the KEYS / ARGV (no send number) of a lone submission of owner 'r' that ran."""
    store, _ = _stores(server)
    admin = redis.Redis.from_url(store.settings.redis_url)
    store.enqueue("t", {"warm": 1})
    part_of: list[Any] = []
    build = store._enqueue_one_call
    store._enqueue.lone = (store._enqueue.lone[0], lambda p: part_of.append(p) or build(p))  # type: ignore[index]
    job, _ = store.enqueue("t", {"i": 1}, owner="r")
    keys, args = build(part_of[0])  # type: ignore[misc]
    return store, admin, job, keys, args


def test_a_resent_lone_call_is_answered_as_its_first_run(private_redis: RedisServer) -> None:
    """A send numbered above 1, or without a number (an older client), that already ran reads the record and
    writes nothing; an invalid layout is refused, never a Lua error."""
    store, admin, job, keys, args = _lone_call(private_redis)
    created_ms = int(admin.hget(store.keys.job(job.id), "created_at") or 0)
    for again in ([*args, 2], list(args)):
        assert admin.eval(scripts.ENQUEUE_ONE, len(keys), *keys, *again) == [[b"ok", created_ms, job.seq]]
    assert admin.llen(store.keys.queue) == 2 and admin.zcard(store.keys.index) == 2
    assert admin.hget(store.keys.pending, "r") == b"1" and admin.xlen(store.keys.event_stream) == 2
    bad = list(args)
    bad[19] = 12  # priority
    assert admin.eval(scripts.ENQUEUE_ONE, len(keys), *keys, *bad, 1) == [[b"invalid", b"priority must be 0..9"]]
    bad = list(args)
    bad[8] = 2  # a job count the lone layout does not take
    assert admin.eval(scripts.ENQUEUE_ONE, len(keys), *keys, *bad, 1) == [[b"invalid", b"malformed submission"]]
    assert admin.llen(store.keys.queue) == 2


def test_priority_delay_and_caps_in_any_number_spelling_are_read_as_numbers(private_redis: RedisServer) -> None:
    """The library's spellings (a digit, '0') are taken as text (profile 29); any other spelling a client may
    send is read by tonumber as before: the record's priority is the digit, bad values are refused."""
    store, admin, _, keys, args = _lone_call(private_redis)

    def run(**at: Any) -> Any:
        new = list(args)
        new[12] = f"{args[12]}-{len(run_ids)}"  # a new job id each time
        run_ids.append(new[12])
        for i, v in at.items():
            new[int(i[1:])] = v
        return admin.eval(scripts.ENQUEUE_ONE, len(keys), *keys, *new, 1)

    run_ids: list[str] = []
    for spelling, stored in (("7", b"7"), ("7.0", b"7"), (" 3", b"3"), ("0x2", b"2"), ("9", b"9"), ("0", b"0")):
        assert run(a19=spelling)[0][0] == b"ok", spelling
        assert admin.hget(store.keys.job(run_ids[-1]), "priority") == stored, spelling
    for bad in ("10", "-1", "x", "", "4.5", "55"):
        assert run(a19=bad) == [[b"invalid", b"priority must be 0..9"]], bad
    for bad in ("-5", "x", ""):
        assert run(a17=bad) == [[b"invalid", b"delay must be >= 0"]], bad
    assert run(a17="0.0")[0][0] == b"ok" and admin.hget(store.keys.job(run_ids[-1]), "run_at") is None
    assert run(a17="250")[0][0] == b"ok" and admin.zscore(store.keys.delayed, run_ids[-1]) is not None
    assert run(a4="1")[0] == [b"full", b"global", store.settings.queue.encode()]  # a cap of 1, 2 waiting
    assert run(a4="x")[0][0] == b"ok" and run(a5="1.0")[0] == [b"full", b"tenant", b""]


def test_a_lone_job_to_an_idle_queue_leaves_one_wake_token_for_one_command(private_redis: RedisServer) -> None:
    """An idle queue's workers have taken its token: the job's push to the empty list adds one with one RPUSH
    (no LLEN first); a token still there is not doubled (the second one is taken back)."""
    store, _ = _stores(private_redis)
    admin = redis.Redis.from_url(store.settings.redis_url)
    store.enqueue("t", {"warm": 1})  # the queue known, the script cached
    admin.delete(store.keys.queue, store.keys.wake)  # taken by an idle worker: waiting list and token gone

    def ran(call: Callable[[], Any]) -> Counter[str]:
        before = Counter({k: int(v["calls"]) for k, v in admin.info("commandstats").items()})
        call()
        after = Counter({k: int(v["calls"]) for k, v in admin.info("commandstats").items()})
        return Counter({k.removeprefix("cmdstat_"): v for k, v in (after - before).items() if k != "cmdstat_info"})

    assert ran(lambda: store.enqueue("t", {"i": 1}))["rpush"] == 2  # the job's and the token's; no LLEN
    assert admin.lrange(store.keys.wake, 0, -1) == [b"1"]
    admin.delete(store.keys.queue)  # the job taken, its token not (no worker idle): one token stays
    assert ran(lambda: store.enqueue("t", {"i": 2}))["rpop"] == 1
    assert admin.lrange(store.keys.wake, 0, -1) == [b"1"]
