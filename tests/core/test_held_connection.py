"""The group commit's held connection (``jobs_core.resend.HeldConnection``) and the submit path's packing, on a
real, private Redis: round trips after the first check nothing out of the pool; a connection closed by the
server (idle or between two calls) is replaced and the call stored exactly once; a forked child never
writes on its parent's socket; the packed bytes are redis-py's; job ids keep the uuid4 form."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from typing import Any

import redis
from jobs_core.config import Settings
from jobs_core.model import is_job_id, new_job_id, new_job_ids
from jobs_core.resend import _pack
from jobs_core.store import JobStore
from support.redis_server import RedisServer


def _store(server: RedisServer, ns: str) -> JobStore:
    return JobStore.from_settings(Settings(redis_url=server.url, key_prefix=ns, queue=ns))


def _stored_once(admin: redis.Redis, store: JobStore, ids: list[str]) -> None:
    queued = Counter(x.decode().strip('"') for x in admin.lrange(store.keys.queue, 0, -1))
    assert [queued[i] for i in ids] == [1] * len(ids)
    assert admin.zcard(store.keys.index) == len(ids)


def _kill_clients_of(admin: redis.Redis, last_command: str) -> int:
    killed = 0
    for c in admin.client_list():
        if c.get("cmd") == last_command:
            killed += int(admin.client_kill_filter(_id=c["id"]))
    return killed


class _CountedPool:
    """Counts the checkouts of a pool (wraps its own ``get_connection``; the connections are real)."""

    def __init__(self, pool: Any) -> None:
        self.checkouts = 0
        real = pool.get_connection

        def get_connection(*args: Any, **kwargs: Any) -> Any:
            self.checkouts += 1
            return real(*args, **kwargs)

        pool.get_connection = get_connection


def test_round_trips_after_the_first_keep_one_connection(private_redis: RedisServer) -> None:
    store = _store(private_redis, "h1")
    counted = _CountedPool(store.redis.connection_pool)
    ids = [store.enqueue("echo", {"i": -1})[0].id]
    assert counted.checkouts == 2  # the connection held from now on, and the script's load (NOSCRIPT)
    ids += [store.enqueue("echo", {"i": i})[0].id for i in range(20)]
    assert counted.checkouts == 2  # every later round trip used the held connection
    _stored_once(private_redis.client(), store, ids)


def test_a_connection_the_server_closed_is_replaced_and_each_call_stored_once(private_redis: RedisServer) -> None:
    admin = private_redis.client()
    store = _store(private_redis, "h2")
    ids = [store.enqueue("echo", {"i": 0})[0].id]
    # closed right after a call: the next send meets a dead socket (lost before it ran) and is sent again
    assert _kill_clients_of(admin, "evalsha") == 1
    ids.append(store.enqueue("echo", {"i": 1})[0].id)
    # closed while idle for longer than the check interval: found stale before anything is sent
    assert _kill_clients_of(admin, "evalsha") == 1
    time.sleep(1.2)
    ids.append(store.enqueue("echo", {"i": 2})[0].id)
    _stored_once(admin, store, ids)
    assert [j.params for j in store.get_many(ids)] == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_a_forked_child_uses_its_own_connection(private_redis: RedisServer) -> None:
    admin = private_redis.client()
    store = _store(private_redis, "h3")
    jobs = [store.enqueue("echo", {"i": -1})[0]]
    answered = {jobs[0].id: jobs[0].seq}
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: the held connection object came along; its socket is the parent's
        code = 1
        try:
            mine = [store.enqueue("echo", {"c": i})[0] for i in range(200)]
            os.write(write, ",".join(f"{j.id}:{j.seq}" for j in mine).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    for i in range(200):  # the parent's, at the same time: a shared socket would hand each the other's reply
        job = store.enqueue("echo", {"p": i})[0]
        answered[job.id] = job.seq
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with os.fdopen(read, "rb") as f:
        for pair in f.read().decode().split(","):
            job_id, seq = pair.split(":")
            answered[job_id] = int(seq)
    _stored_once(admin, store, list(answered))
    assert len(answered) == 401
    assert {j.id: j.seq for j in store.get_many(list(answered))} == answered  # each answer was its own call's


def test_the_packed_calls_are_the_bytes_redis_py_sends(private_redis: RedisServer) -> None:
    conn = private_redis.client().connection_pool.get_connection()
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", "a" * 40, 2, "k:1", "k:é", 1, -3, 2.5, 300.0, 1e-7, 10**20, b"\x00\xff", "", bytearray(b"ba")),
        ("SET", "fence", b"1"), ("WAIT", 1, 100), ("WAITAOF", 1, 1, 100),
    ]
    assert _pack(conn, commands) == [b"".join(conn.pack_commands(commands))]


def test_job_ids_are_canonical_uuid4s() -> None:
    ids = [new_job_id(), *new_job_ids(200)]
    assert len(set(ids)) == len(ids)
    for job_id in ids:
        u = uuid.UUID(job_id)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, job_id)
        assert is_job_id(job_id)
