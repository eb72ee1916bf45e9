"""Numbered re-sends (jobs_core.resend): the first send of ENQUEUE and FINISH_CLAIM skips the re-send check,
and a call whose reply was lost after it ran is re-sent numbered, detected and answered as its first run.

The reply is really lost: a TCP proxy (support.reply_dropper) forwards the script call to a real Redis and
closes the connection when Redis answers it. Had any re-send gone out as a first send (redis-py's silent
``Retry``), the script would have skipped its check and run the call a second time: the counts below
(records, queue entries, index, pending counters, attempts) would show it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from jobs_core import scripts
from jobs_core.config import Settings
from jobs_core.model import Job, Result, Submission
from jobs_core.store import Finish, JobStore
from support.redis_server import RedisServer
from support.reply_dropper import ReplyDropper


@pytest.fixture
def dropper(private_redis: RedisServer) -> Iterator[ReplyDropper]:
    proxy = ReplyDropper(private_redis.port)
    try:
        yield proxy
    finally:
        proxy.close()


def _store(dropper: ReplyDropper, ns: str, **kw: Any) -> JobStore:
    settings = Settings(redis_url=dropper.url, key_prefix=ns, queue=ns, **kw)
    return JobStore.from_settings(settings)


def _calls(admin: redis.Redis) -> Counter[str]:
    """Commands Redis ran so far, by name (``INFO commandstats``; scripts' inner commands included)."""
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in admin.info("commandstats").items()})


def _stored_once(admin: redis.Redis, store: JobStore, jobs: list[Job]) -> None:
    """Each job: one queue entry, one index entry, its record's seq and creation time as answered."""
    queued = Counter(x.decode().strip('"') for x in admin.lrange(store.keys.queue, 0, -1))
    for j in jobs:
        assert queued[j.id] == 1, j.id
        assert admin.zscore(store.keys.index, j.id) == j.seq
        stored = store.get(j.id)
        assert (stored.seq, stored.created_at, stored.attempts) == (j.seq, j.created_at, 0)


def test_a_first_send_skips_the_check_and_a_lost_reply_is_answered_as_the_first_run(
        private_redis: RedisServer, dropper: ReplyDropper) -> None:
    store = _store(dropper, "e")
    admin = private_redis.client()
    warm, _ = store.enqueue("echo", {"warm": 1}, owner="t")  # scripts cached, as in any running API

    before = _calls(admin)
    plain, created = store.enqueue("echo", {"a": 0}, owner="t")
    ran = _calls(admin) - before
    assert created and ran["evalsha"] == 1 and ran["exists"] == 0  # a first send: no re-send check

    dropper.drop = 1
    before = _calls(admin)
    job, created = store.enqueue("echo", {"a": 1}, owner="t")
    ran = _calls(admin) - before
    assert dropper.dropped == 1 and created
    # the first send ran (one record written), the re-send found it (a lone job, lua/enqueue_one.lua: the
    # record's HMGET, besides the first send's control HMGET) and wrote nothing
    assert ran["evalsha"] == 2 and ran["hmget"] == 2 and ran["hset"] == 1 and ran["xadd"] == 1
    _stored_once(admin, store, [warm, plain, job])
    assert admin.llen(store.keys.queue) == 3 and admin.zcard(store.keys.index) == 3
    assert admin.hget(store.keys.pending, "t") == b"3" and admin.get(store.keys.seq) == b"3"


def test_a_grouped_call_whose_reply_was_lost_answers_every_part_as_its_first_run(
        private_redis: RedisServer, dropper: ReplyDropper) -> None:
    store = _store(dropper, "g")
    admin = private_redis.client()
    store.enqueue("echo", {"warm": 1}, owner="w")
    admin.script_load(scripts.ENQUEUE)  # the warm-up went to ENQUEUE_ONE (a lone job)
    # the leader's call is held in the proxy while four more submissions (one a batch of 3) queue behind it;
    # they then go as ONE call, whose reply is lost
    held = dropper.hold = threading.Event()
    out: dict[int, Any] = {}

    def submit(i: int) -> None:
        try:
            if i == 3:
                out[i] = store.enqueue_many([Submission("echo", {"b": k}) for k in range(3)], owner="b")
            else:
                out[i] = store.enqueue("echo", {"s": i}, owner=f"o{i % 2}")
        except Exception as e:  # reported by the assertion below
            out[i] = e

    trips, calls = store._enqueue.round_trips, store._enqueue.calls
    threads = [threading.Thread(target=submit, args=(0,))]
    threads[0].start()
    while dropper.hold is not None:  # the leader's request reached the proxy
        time.sleep(0.005)
    threads += [threading.Thread(target=submit, args=(i,)) for i in range(1, 5)]
    for t in threads[1:]:
        t.start()
    while len(store._enqueue._queue) < 5:
        time.sleep(0.005)
    dropper.drop = 1  # the next call: the group's
    before = _calls(admin)
    held.set()
    for t in threads:
        t.join(30)

    ran = _calls(admin) - before
    assert not [v for v in out.values() if isinstance(v, Exception)], out
    assert (store._enqueue.round_trips - trips, store._enqueue.calls - calls) == (2, 5)  # leader, then the group
    assert dropper.dropped == 1
    # the leader's call, the group's, the group's re-send (one EXISTS over its four first ids)
    assert ran["evalsha"] == 3 and ran["exists"] == 1 and ran["hset"] == 1 + 3 + 3
    jobs: list[Job] = []
    for i, (got, created) in sorted(out.items()):
        assert created, i
        jobs += got if isinstance(got, list) else [got]
    _stored_once(admin, store, jobs)
    assert len({j.seq for j in jobs}) == 7 and admin.llen(store.keys.queue) == 8
    assert admin.zcard(store.keys.index) == 8 and admin.get(store.keys.seq) == b"8"
    assert {k: int(v) for k, v in admin.hgetall(store.keys.pending).items()} == \
        {b"w": 1, b"o0": 3, b"o1": 1, b"b": 3}  # singles 0, 2, 4 and 1; the batch


def test_finish_claim_whose_reply_was_lost_is_answered_as_its_first_run(
        private_redis: RedisServer, dropper: ReplyDropper) -> None:
    store = _store(dropper, "f", lease_seconds=30.0)
    admin = private_redis.client()
    first, _ = store.enqueue("echo", {}, owner="t")
    second, _ = store.enqueue("echo", {}, owner="t")
    before = _calls(admin)
    [running] = store.claim("w1", 1)
    ran = _calls(admin) - before
    assert running.id == first.id and ran["get"] == 0  # a first send reads no claim memo

    dropper.drop = 1
    before = _calls(admin)
    statuses, claimed = store.finish_and_claim(
        "w1", [Finish(running.id, running.attempt, "succeeded", result=Result(b"1", "application/json"))], 1)
    ran = _calls(admin) - before
    assert dropper.dropped == 1
    assert statuses == ["succeeded"] and [c.id for c in claimed] == [second.id] and claimed[0].attempt == 1
    assert ran["evalsha"] == 2 and ran["get"] == 1  # the re-send's memo read, only
    assert store.get(first.id).status.value == "succeeded" and store.get_result(first.id).data == b"1"
    again = store.get(second.id)
    assert (again.status.value, again.attempts, again.worker) == ("running", 1, "w1")  # claimed once
    assert admin.llen(store.keys.queue) == 0


def test_a_call_without_a_send_number_is_checked(private_redis: RedisServer) -> None:
    """Rolling upgrade: a FINISH_CLAIM token without a send number (an older client) may be a re-send, so
    the script reads the memo and answers a repeat as the first run."""
    settings = Settings(redis_url=private_redis.url, key_prefix="o", queue="o", lease_seconds=30.0)
    store = JobStore.from_settings(settings)
    admin = private_redis.client()
    job, _ = store.enqueue("echo", {}, owner="t")
    keys, args = store._finish_claim_args("w1", (), 1)  # a bare token, last: as an older client sends it
    first = admin.eval(scripts.FINISH_CLAIM, len(keys), *keys, *args)
    before = _calls(admin)
    again = admin.eval(scripts.FINISH_CLAIM, len(keys), *keys, *args)
    assert again == first and first[1][0] == job.id.encode()
    assert (_calls(admin) - before)["get"] == 1
    assert store.get(job.id).attempts == 1


def test_an_idle_workers_pipelined_claim_whose_reply_was_lost_hands_it_its_job(
        private_redis: RedisServer, dropper: ReplyDropper) -> None:
    """The idle wait (BLPOP + claim in one send): the reply of both is lost after the claim ran; the claim is
    re-sent alone as send 2 and answered from the memo, so the job is not left leased to a worker that never
    heard of it."""
    store = _store(dropper, "i", lease_seconds=30.0)
    admin = private_redis.client()
    store.claim("warm", 0)  # scripts cached, as in any running worker
    job, _ = store.enqueue("echo", {}, owner="t")  # its wake token: the wait returns at once
    dropper.drop = 1
    before = _calls(admin)
    claimed = store.wait_and_claim("w1", 1, 1.0)
    ran = _calls(admin) - before
    assert dropper.dropped == 1
    assert [c.id for c in claimed] == [job.id] and claimed[0].attempt == 1
    assert ran["evalsha"] == 2 and ran["get"] == 1  # the claim, then its re-send reading the memo
    again = store.get(job.id)
    assert (again.status.value, again.attempts, again.worker) == ("running", 1, "w1")


def _memo_store(private_redis: RedisServer, ns: str) -> tuple[JobStore, redis.Redis]:
    settings = Settings(redis_url=private_redis.url, key_prefix=ns, queue=ns, lease_seconds=30.0)
    return JobStore.from_settings(settings), private_redis.client()


def test_the_claim_memo_is_text_and_a_repeat_is_answered_from_it(private_redis: RedisServer) -> None:
    """The memo holds the token, the call's clock (the claimed jobs' started_at), the finishes' statuses and
    the claimed ids (profile 29: no cjson per call); a repeat of the call gets the first run's reply."""
    store, admin = _memo_store(private_redis, "m")
    first, _ = store.enqueue("echo", {}, owner="t")
    second, _ = store.enqueue("echo", {}, owner="t")
    third, _ = store.enqueue("echo", {}, owner="t")
    [running] = store.claim("w1", 1)
    finish = Finish(running.id, running.attempt, "succeeded", result=Result(b"1", "application/json"))
    keys, args = store._finish_claim_args("w1", [finish], 2)
    reply = admin.evalsha(store._finish_claim.sha, len(keys), *keys, *args[:-1], f"{args[-1]}:1")
    token, now, statuses, ids = admin.get(store.keys.claim_memo("w1")).decode().split("\n")
    assert token == args[-1] and statuses == "succeeded" and ids == f"{second.id},{third.id}"
    assert now == admin.hget(store.keys.job(second.id), "started_at").decode()
    before = _calls(admin)
    again = admin.evalsha(store._finish_claim.sha, len(keys), *keys, *args[:-1], f"{args[-1]}:2")
    assert again == reply and [reply[0], reply[1][0], reply[1][8]] == \
        [[b"succeeded"], second.id.encode(), third.id.encode()]
    assert (_calls(admin) - before)["hset"] == 0  # answered, nothing run again
    assert store.get(first.id).status.value == "succeeded" and store.get(second.id).attempts == 1
    # a job of the memo no longer held by this claim (here: claimed at another time) is left out
    admin.hset(store.keys.job(third.id), "started_at", "1")
    again = admin.evalsha(store._finish_claim.sha, len(keys), *keys, *args[:-1], f"{args[-1]}:2")
    assert again[0] == [b"succeeded"] and again[1] == reply[1][:8]
    # another token is not answered from the memo: the call runs (nothing queued is left to claim)
    other = admin.evalsha(store._finish_claim.sha, len(keys), *keys, *args[:-1], "other:2")
    assert other[0] == [b"stale:succeeded"] and other[1] == []


def test_a_claim_memo_of_the_version_before_is_still_read(private_redis: RedisServer) -> None:
    """A JSON memo ({t, ids, att, st}, attempts as strings or numbers) is answered as before."""
    store, admin = _memo_store(private_redis, "j")
    job, _ = store.enqueue("echo", {}, owner="t")
    other, _ = store.enqueue("echo", {}, owner="t")
    store.claim("w1", 2)
    keys, args = store._finish_claim_args("w1", (), 2)
    admin.set(store.keys.claim_memo("w1"),
              json.dumps({"t": "old", "ids": [job.id, other.id], "att": ["1", 2], "st": ["succeeded"]}))
    reply = admin.evalsha(store._finish_claim.sha, len(keys), *keys, *args[:-1], "old:2")
    # the first job's attempt matches; the second's memo says attempt 2, the record 1: not this claim's
    assert reply[0] == [b"succeeded"] and reply[1][0] == job.id.encode() and len(reply[1]) == 8
    assert reply[1][4] == 1


def test_calls_are_packed_byte_for_byte_as_redis_py_packs_them(store: JobStore) -> None:
    """``send_once`` hands non-packed commands to hiredis as they are (redis-py's packer walks every argument
    in Python first, for types these calls never send): the same bytes as redis-py's packing for every type a
    call sends, and what hiredis refuses (a bytearray, a command name of two words) goes redis-py's way."""
    from jobs_core import resend
    from jobs_core.resend import Packed

    conn = store.redis.connection_pool.get_connection()
    try:
        commands: list[Any] = [
            ("EVALSHA", "a" * 40, 2, "k:é", b"k2", 1, -7, 2.5, 0.1 + 0.2, 1e20, 10**20, b"\x00\r\n$3\xff", "",
             b"", "ü" * 3),
            ("BLPOP", "wake:a", "wake:b", 0.95),
            ("SET", "fence", b"1"), ("WAIT", 1, 500), ("WAITAOF", 1, 1, 500),
        ]
        expected = b"".join(b"".join(conn.pack_command(*c)) for c in commands)
        assert resend._pack(conn, commands) == [expected]
        packed = Packed("EVALSHA", b"*1\r\n$7\r\nEVALSHA\r\n", 1)
        assert resend._pack(conn, [commands[1], packed]) == [b"".join(conn.pack_command(*commands[1])) + packed.data]
        # refused by hiredis: packed by redis-py, which converts (or splits) them
        assert b"".join(resend._pack(conn, [("SET", "k", bytearray(b"v"))])) == \
            b"".join(conn.pack_command("SET", "k", b"v"))
        assert b"".join(resend._pack(conn, [("CONFIG GET", "maxmemory")])) == \
            b"".join(conn.pack_command("CONFIG", "GET", "maxmemory"))
        with pytest.raises(redis.DataError):
            resend._pack(conn, [("SET", "k", None)])
    finally:
        store.redis.connection_pool.release(conn)
