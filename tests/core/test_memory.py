"""Issue 16 #5 (memory): under the Redis settings Jobs API ships (``jobs_core.redis_tuning``), a typical job
record stays in Redis' compact listpack encoding in every state, so a new field or a longer value that
breaks it (and triples the bytes per finished job) fails here; with Redis' default the same records are
hashtables (the negative control: the setting is what keeps them small)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from jobs_core.config import Settings
from jobs_core.model import JobError, Result
from jobs_core.redis_tuning import HASH_MAX_LISTPACK_VALUE, REDIS_SERVER_CONFIG
from jobs_core.store import JobStore
from support.redis_server import RedisServer

W = "vm-7f9c2:4242:5a1e0c"  # a worker id as the worker builds it (host:pid:random)
#: Params of a typical submission (~150 B of JSON), not the benchmark's ``{"i": 1}``.
PARAMS = {"input": "s3://acme-renders/in/2026/11/30/scene-0042.blend", "frames": [1, 240], "quality": "high",
          "notify": True, "callback_ref": "order-88311"}
#: A result of a typical size.
RESULT = Result(b'{"output": "s3://acme-renders/out/2026/11/30/scene-0042/", "frames": 240, "ok": true}',
                "application/json")


def _load_scene(path: str) -> None:
    raise FileNotFoundError(f"no such object: {path}")


def _render(params: dict[str, object]) -> None:
    _load_scene(str(params["input"]))


def _task(params: dict[str, object]) -> None:
    _render(params)


def typical_error() -> JobError:
    """A real traceback of a few frames, as the worker stores it (type, message, formatted traceback)."""
    try:
        _task(PARAMS)
    except FileNotFoundError as e:
        return JobError(type(e).__name__, str(e), traceback.format_exc())
    raise AssertionError("unreachable")


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[JobStore]:
    """A store on a private redis-server started as every Redis we ship (tests/support/redis_server.py)."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = JobStore.from_settings(Settings(redis_url=server.url, lease_seconds=30.0,
                                                  retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.1))
        yield store
    finally:
        server.stop()


def encoding(store: JobStore, job_id: str) -> str:
    return str(store.redis.object("encoding", store.keys.job(job_id)), "ascii")


def long_fields(client: redis.Redis, key: str, limit: int) -> dict[str, int]:
    """Fields whose value is longer than ``limit`` bytes (each one makes the hash a hashtable)."""
    return {str(k, "utf-8"): len(v) for k, v in client.hgetall(key).items() if len(v) > limit}


def lives(store: JobStore) -> dict[str, str]:
    """One job per end state plus a queued and a running one, through the store's real scripts:
    succeeded after a progress message, failed with a real traceback after a retry, cancelled."""
    ids: dict[str, str] = {}
    for name in ("succeeded", "retried-then-failed", "cancelled", "running"):
        ids[name] = store.enqueue("render", PARAMS, max_attempts=3)[0].id
    claimed = {c.id: c for c in store.claim(W, 4)}
    assert set(claimed) == {ids[k] for k in ("succeeded", "retried-then-failed", "cancelled", "running")}
    assert store.set_progress(W, ids["succeeded"], 1, 0.5, "rendered 120 of 240 frames")
    assert store.set_progress(W, ids["running"], 1, 0.25, "rendered 60 of 240 frames")
    store.heartbeat(W, [(ids["succeeded"], 1), (ids["running"], 1)], {"slots": 4, "running": 2}, 30)
    assert store.finish(W, ids["succeeded"], 1, "succeeded", result=RESULT) == "succeeded"
    assert store.finish(W, ids["cancelled"], 1, "cancelled") == "cancelled"
    assert store.finish(W, ids["retried-then-failed"], 1, "retry", error=typical_error()) == "queued"
    deadline = time.monotonic() + 10
    while not (again := store.claim(W, 1)):  # the retry waits out its backoff in the delayed set
        assert time.monotonic() < deadline, "the retry never came back"
        time.sleep(0.05)
    assert again[0].id == ids["retried-then-failed"] and again[0].attempt == 2
    assert store.finish(W, again[0].id, 2, "failed", error=typical_error()) == "failed"
    ids["queued"] = store.enqueue("render", PARAMS)[0].id
    return ids


def test_typical_records_stay_listpack_under_the_shipped_setting(shipped: JobStore) -> None:
    client = shipped.redis
    assert client.config_get("hash-max-listpack-value") == {
        "hash-max-listpack-value": REDIS_SERVER_CONFIG["hash-max-listpack-value"]}
    ids = lives(shipped)
    for state, job_id in ids.items():
        key = shipped.keys.job(job_id)
        assert long_fields(client, key, HASH_MAX_LISTPACK_VALUE) == {}, state
        assert encoding(shipped, job_id) == "listpack", (state, client.hgetall(key))
    failed = client.hgetall(shipped.keys.job(ids["retried-then-failed"]))
    assert b"Traceback" in failed[b"error"] and len(failed[b"error"]) > 256  # the test models a real error
    # what the encoding buys (measured: succeeded 744 B vs 1,672 B, failed with its traceback 1,640 B vs
    # 2,512 B): under half for a succeeded record, a quarter off a failed one, whose traceback dominates
    ended = ("succeeded", "retried-then-failed")
    small = {state: client.memory_usage(shipped.keys.job(ids[state]), samples=0) for state in ended}
    client.flushdb()  # this test's own server
    client.config_set("hash-max-listpack-value", 64)  # Redis' default
    control = lives(shipped)
    for state in ended:
        assert encoding(shipped, control[state]) == "hashtable", state
        big = client.memory_usage(shipped.keys.job(control[state]), samples=0)
        share = 0.5 if state == "succeeded" else 0.75
        assert small[state] is not None and big is not None and small[state] < share * big, (state, small, big)


def test_a_value_over_the_setting_still_works_as_a_hashtable(shipped: JobStore) -> None:
    """The setting only chooses the encoding: a record with params longer than it converts to a
    hashtable and reads back the same."""
    params = {"blob": "x" * (HASH_MAX_LISTPACK_VALUE + 1)}
    job, _ = shipped.enqueue("render", params)
    assert encoding(shipped, job.id) == "hashtable"
    (claimed,) = shipped.claim(W, 1)
    assert shipped.finish(W, claimed.id, 1, "succeeded", result=RESULT) == "succeeded"
    done = shipped.get(job.id)
    assert done.params == params and done.status.value == "succeeded"


def test_pruning_drops_expired_records_from_every_index(store: JobStore) -> None:
    """Index entries must not outlive their records: a tenant's index was pruned only by listing, so a
    tenant that never listed kept ~136 B per job for good. One pass drops the expired ids from the job
    index, the failed set and each tenant's index, stepping over a live job older than them, and also
    clears what an earlier version left in a tenant index below the job index's oldest entry."""
    k = store.keys
    old_live = store.enqueue("echo", {}, owner="t1")[0].id  # still queued: older than the expired ones
    expired = {owner: [store.enqueue("echo", {"n": i}, owner=owner)[0].id for i in range(300)]
               for owner in ("t1", "t2")}
    failed = store.enqueue("fail", {}, owner="t2", max_attempts=1)[0].id
    store.redis.zadd(k.failed, {failed: 1})  # as the failing finish records it
    live = store.enqueue("echo", {}, owner="t2")[0].id
    gone = [*expired["t1"], *expired["t2"], failed]
    store.redis.delete(*(k.job(j) for j in gone))  # as if their records expired
    # what a previous version left: an id the job index dropped, still in a tenant's index
    store.redis.zadd(k.owner_index("t2"), {"left-by-an-old-version": 0})

    dropped = store.prune_indexes(batch=50)
    assert dropped == len(gone) + 1  # the failed job is in the job index and in the failed set
    assert {x.decode() for x in store.redis.zrange(k.index, 0, -1)} == {old_live, live}
    assert [x.decode() for x in store.redis.zrange(k.owner_index("t1"), 0, -1)] == [old_live]
    assert [x.decode() for x in store.redis.zrange(k.owner_index("t2"), 0, -1)] == [live]
    assert store.redis.zcard(k.failed) == 0
    assert store.prune_indexes(batch=50) == 0  # nothing left to drop; the live jobs stay
    assert store.get(old_live).status.value == "queued" and store.get(live).status.value == "queued"
