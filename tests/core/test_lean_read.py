"""The waiter's lean read of its pub/sub connection (``jobs_core.pubsub_read``): one ``poll`` + one read per
delivered message in the steady state, redis-py's ``get_message`` for everything else (connect, a due health
check, reconnect and re-subscribe after a closed connection), and the same messages as redis-py would give:
RESP2 arrays and RESP3 pushes, several in one read, one split across reads, results of 64 KiB and 4 MiB,
subscription bookkeeping kept. Counted, not timed: which reads went through redis-py, how many reads of the
socket a delivery took."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from jobs_core import waiting
from jobs_core.config import Settings
from jobs_core.model import Job, JobStatus, Result
from jobs_core.pubsub_read import MessageReader
from jobs_core.resend import send_once
from jobs_core.store import JobStore
from support.redis_server import RedisServer
from support.reply_dropper import ReplyDropper


@pytest.fixture
def redis_py_reads(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every ``PubSub.get_message`` call (redis-py's read path) by any thread, by its timeout."""
    seen: list[float] = []
    original = redis.client.PubSub.get_message

    def counted(self: Any, ignore_subscribe_messages: bool = False, timeout: float = 0.0) -> Any:
        seen.append(timeout)
        return original(self, ignore_subscribe_messages, timeout)

    monkeypatch.setattr(redis.client.PubSub, "get_message", counted)
    return seen


@pytest.fixture
def socket_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The byte count of every ``os.readv`` (the lean read's only read of the socket)."""
    seen: list[int] = []
    original = os.readv

    def counted(fd: int, buffers: Any) -> int:
        n = original(fd, buffers)
        seen.append(n)
        return n

    monkeypatch.setattr(os, "readv", counted)
    return seen


@pytest.fixture
def no_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait ends only by its message (the once-a-second re-read pushed out of reach)."""
    monkeypatch.setattr(waiting, "REREAD_SECONDS", 3600.0)


def subscribed(client: redis.Redis, channel: str, protocol: int) -> tuple[redis.client.PubSub, MessageReader]:
    kwargs = client.connection_pool.connection_kwargs
    pubsub = redis.Redis(host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0), protocol=protocol,
                         health_check_interval=30).pubsub()
    pubsub.subscribe(channel)
    reader = MessageReader(pubsub)
    first = reader.read(5)
    assert first is not None and first["type"] == "subscribe"
    return pubsub, reader


def arrived(pubsub: redis.client.PubSub, count: int, marker: bytes) -> None:
    """Wait until ``count`` occurrences of ``marker`` sit unread in the socket (peeked, not read)."""
    sock = pubsub.connection._sock  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while sock.recv(1 << 20, socket.MSG_PEEK).count(marker) < count:
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.parametrize("protocol", [2, 3])
def test_several_messages_in_one_read_are_served_from_the_buffer(
        store: JobStore, protocol: int, socket_reads: list[int], redis_py_reads: list[float]) -> None:
    channel = store.keys.reply_channel(f"lean-{protocol}")
    pubsub, reader = subscribed(store.redis, channel, protocol)
    try:
        pipe = store.redis.pipeline(transaction=False)
        for i in range(3):
            pipe.publish(channel, b"m%d\n\x00\xff" % i)
        assert pipe.execute() == [1, 1, 1]
        arrived(pubsub, 3, b"\x00\xff")
        before = len(socket_reads)
        got = [reader.read(5) for _ in range(3)]
        assert [(m["type"], m["channel"], m["data"]) for m in got if m] == \
            [("message", channel.encode(), b"m%d\n\x00\xff" % i) for i in range(3)]
        assert len(socket_reads) - before == 1  # one read, the two others from the reader's buffer
        assert reader.read(0.05) is None
        assert redis_py_reads == []  # the steady state never went through get_message
    finally:
        pubsub.close()


class ChunkProxy(ReplyDropper):
    """A TCP proxy to Redis (requests passed on as they come) that passes the server's bytes on ``chunk`` at a
    time, each sent on its own, and holds back everything after ``hold_after`` bytes of the first reply
    containing ``marker`` until :attr:`release` is set."""

    def __init__(self, port: int, chunk: int, marker: bytes, hold_after: int) -> None:
        super().__init__(port, marker=b"\x00no request has this\x00")
        self.chunk, self.reply_marker, self.hold_after = chunk, marker, hold_after
        self.release = threading.Event()

    def close(self) -> None:
        self.release.set()
        super().close()

    def _replies(self, client: socket.socket, upstream: socket.socket, lose: threading.Event) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := upstream.recv(65536):
                held = self.reply_marker in data and not self.release.is_set()
                for i in range(0, len(data), self.chunk):
                    if held and i >= self.hold_after:
                        self.release.wait(30)
                    client.sendall(data[i:i + self.chunk])
                    time.sleep(0.001)  # each chunk its own segment: the reader sees it arrive alone
        except OSError:
            pass
        self._close(client, upstream)


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_message_split_across_reads_is_completed_by_the_next_ones(
        store: JobStore, settings: Settings, protocol: int, socket_reads: list[int],
        redis_py_reads: list[float]) -> None:
    port = store.redis.connection_pool.connection_kwargs["port"]
    proxy = ChunkProxy(port, chunk=7, marker=b"PAYLOAD", hold_after=70)
    client = redis.Redis.from_url(proxy.url)
    channel = store.keys.reply_channel(f"split-{protocol}")
    pubsub, reader = subscribed(client, channel, protocol)
    try:
        data = b"PAYLOAD" + bytes(range(256)) * 4
        assert store.redis.publish(channel, data) == 1
        before = len(socket_reads)
        assert reader.read(0.3) is None  # part of it came; the rest is held back: nothing yet, not an error
        partial = len(socket_reads) - before
        assert partial >= 2
        proxy.release.set()
        message = reader.read(10)
        assert message is not None and message["type"] == "message" and message["data"] == data
        assert len(socket_reads) - before > partial + 1  # completed over several more reads
        assert redis_py_reads == []
    finally:
        pubsub.close()
        proxy.close()


@pytest.fixture
def pstore(private_redis: RedisServer, settings: Settings) -> JobStore:
    return JobStore.from_settings(settings.replace(redis_url=private_redis.url))


@pytest.mark.parametrize("size", [64 * 1024, 4 * 1024 * 1024])
def test_large_results_are_delivered_whole_by_the_lean_read(
        pstore: JobStore, size: int, redis_py_reads: list[float]) -> None:
    data = os.urandom(size)
    pstore.enqueue("echo", {}, reply=True)  # the reply channel subscribed (its confirmation read) first
    job, _ = pstore.enqueue("echo", {"n": 2}, reply=True)
    claimed = {c.id: c for c in pstore.claim("w", 2)}
    assert pstore.finish("w", job.id, claimed[job.id].attempt, "succeeded",
                         result=Result(data, "application/octet-stream")) == "succeeded"
    before = list(redis_py_reads)
    done, result = pstore.wait_result(job.id, 20)
    assert done.status is JobStatus.SUCCEEDED and result == Result(data, "application/octet-stream")
    assert redis_py_reads == before  # read by the lean path alone


def pubsub_clients(client: redis.Redis) -> list[dict[str, Any]]:
    return [c for c in client.client_list() if int(c.get("sub", 0)) > 0]


def resubscribed(client: redis.Redis, channel: str, old_ids: set[str]) -> None:
    """Wait until a connection other than ``old_ids`` is subscribed to ``channel``."""
    deadline = time.monotonic() + 20
    while True:
        ids = {c["id"] for c in pubsub_clients(client)}
        if ids and not ids & old_ids and client.pubsub_numsub(channel)[0][1] == 1:
            return
        assert time.monotonic() < deadline, (ids, old_ids)
        time.sleep(0.02)


def waiting_thread(store: JobStore) -> tuple[threading.Thread, threading.Event, list[Any]]:
    """A thread that submits with its reply channel, says so, then waits for the job's end."""
    out: list[Any] = []
    submitted = threading.Event()

    def run() -> None:
        try:
            job, _ = store.enqueue("echo", {"x": 1}, reply=True)
            out.append(job)
            out.append(store.reply_channel())
            submitted.set()
            out.append(store.wait_result(job.id, 30))
        except BaseException as e:  # reported to the test
            out.append(e)
            submitted.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert submitted.wait(20), out
    return thread, submitted, out


def finish_and_hear(store: JobStore, thread: threading.Thread, out: list[Any]) -> tuple[Job, Result | None]:
    job = out[0]
    (claimed,) = store.claim("w", 1)
    assert store.finish("w", job.id, claimed.attempt, "succeeded", result=Result(b'"done"', "application/json")) \
        == "succeeded"
    thread.join(30)
    assert not thread.is_alive() and len(out) == 3, out
    done, result = out[2]
    assert done.status is JobStatus.SUCCEEDED and result == Result(b'"done"', "application/json")
    return done, result


def test_a_killed_reply_connection_is_reconnected_and_resubscribed_mid_wait(
        pstore: JobStore, no_reread: None, redis_py_reads: list[float]) -> None:
    thread, _, out = waiting_thread(pstore)
    channel = out[1]
    old = {c["id"] for c in pubsub_clients(pstore.redis)}
    assert len(old) == 1
    reads_before = len(redis_py_reads)
    pstore.redis.client_kill_filter(_type="pubsub")
    resubscribed(pstore.redis, channel, old)  # redis-py's reconnect (its connect callback re-subscribes)
    finish_and_hear(pstore, thread, out)  # heard by its message: the re-read is an hour away
    assert len(redis_py_reads) > reads_before  # the reconnect went through redis-py


def test_a_redis_restart_mid_wait_is_reconnected_and_resubscribed(
        tmp_path: Path, settings: Settings, no_reread: None) -> None:
    server = RedisServer(tmp_path / "aof", appendfsync="always").start()
    try:
        store = JobStore.from_settings(settings.replace(redis_url=server.url))
        thread, _, out = waiting_thread(store)
        channel = out[1]
        old = {c["id"] for c in pubsub_clients(store.redis)}
        server.restart()  # SIGKILL and start again: the job is kept (AOF), every connection is gone
        resubscribed(store.redis, channel, old)
        finish_and_hear(store, thread, out)
    finally:
        server.stop()


def test_a_due_health_check_pings_and_its_answer_is_not_a_message(
        pstore: JobStore, redis_py_reads: list[float]) -> None:
    pubsub, reader = subscribed(pstore.redis, "health", 3)
    try:
        conn: Any = pubsub.connection
        assert conn.health_check_interval == 30  # jobs_core.connection's setting
        pings = int(pstore.redis.info("commandstats").get("cmdstat_ping", {}).get("calls", 0))
        conn.next_health_check = 0.0  # due
        assert reader.read(0.2) is None  # redis-py's path: PING sent, its answer filtered out
        assert len(redis_py_reads) == 1
        assert int(pstore.redis.info("commandstats")["cmdstat_ping"]["calls"]) == pings + 1
        assert pstore.redis.publish("health", b"after") == 1
        message = reader.read(5)
        assert message is not None and message["data"] == b"after"
        assert conn.next_health_check > time.monotonic() + 20  # the read moved the next check on
        assert len(redis_py_reads) == 1
    finally:
        pubsub.close()


@pytest.mark.parametrize("protocol", [2, 3])
def test_unsubscribe_confirmations_keep_redis_py_bookkeeping(store: JobStore, protocol: int) -> None:
    pubsub, reader = subscribed(store.redis, "keep-a", protocol)
    try:
        pubsub.subscribe("keep-b")
        pubsub.unsubscribe("keep-a")
        kinds = []
        while (m := reader.read(2)) is not None:
            kinds.append((m["type"], m["channel"]))
        assert kinds == [("subscribe", b"keep-b"), ("unsubscribe", b"keep-a")]
        assert set(pubsub.channels) == {b"keep-b"}  # a reconnect re-subscribes keep-b only
        assert not pubsub.pending_unsubscribe_channels
    finally:
        pubsub.close()


def test_the_lean_read_serves_a_held_post_with_prefer_wait_too(
        pstore: JobStore, redis_py_reads: list[float]) -> None:
    """The API's held ``POST /jobs`` + ``Prefer: wait`` (jobs_api/prefer.py) waits with ``wait_result`` on its
    thread's reply channel, in slices, while its submission is finished elsewhere: no read goes through
    redis-py there either."""
    pstore.reply_channel()
    job, _ = pstore.enqueue("echo", {}, reply=True)
    (claimed,) = pstore.claim("w", 1)
    before = list(redis_py_reads)
    threading.Timer(0.1, lambda: pstore.finish("w", job.id, claimed.attempt, "succeeded",
                                               result=Result(b"1", "application/json"))).start()
    done, result = pstore.wait_result(job.id, 20, owner=job.owner)
    assert done.status is JobStatus.SUCCEEDED and result == Result(b"1", "application/json")
    assert redis_py_reads == before


# --------------------------------------------------------------------------- the calls' own connection
# resend.send_once (a submission's ENQUEUE_ONE, a worker's FINISH_CLAIM) writes its request with one write
# and reads the reply with poll + readv into the connection's hiredis reader: the same replies as redis-py's
# parse_response, whatever the split, size or pushes in between.


@pytest.fixture
def socket_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """``(asked, written)`` of every ``os.write`` (the lean send's write)."""
    seen: list[tuple[int, int]] = []
    original = os.write

    def counted(fd: int, data: Any) -> int:
        n = original(fd, data)
        seen.append((len(data), n))
        return n

    monkeypatch.setattr(os, "write", counted)
    return seen


def test_a_reply_split_across_reads_is_read_whole(store: JobStore, socket_reads: list[int]) -> None:
    port = store.redis.connection_pool.connection_kwargs["port"]
    proxy = ChunkProxy(port, chunk=5, marker=b"\x00never held\x00", hold_after=0)
    try:
        client = redis.Redis.from_url(proxy.url)
        key, value = store.keys.job("split-reply"), bytes(range(256)) * 2
        assert send_once(client, [("SET", key, value), ("GET", key)]) == [True, value]  # SET's callback: True
        assert len(socket_reads) > 3  # the replies came in pieces, each read on its own
        out = send_once(client, [("HGET", key, "x")])
        assert isinstance(out[0], redis.ResponseError) and "WRONGTYPE" in str(out[0])  # an error in its place
    finally:
        proxy.close()


def test_a_request_larger_than_the_socket_buffer_is_sent_whole(
        store: JobStore, socket_writes: list[tuple[int, int]]) -> None:
    key, value = store.keys.job("big-request"), os.urandom(8 * 1024 * 1024)
    assert send_once(store.redis, [("SET", key, value)]) == [True]
    asked, written = socket_writes[-1]
    assert asked > len(value) and written < asked  # the buffer took part of it; redis-py sent the rest
    assert store.redis.get(key) == value


def test_resp3_pushes_before_a_reply_are_handed_to_redis_py(store: JobStore) -> None:
    kwargs = store.redis.connection_pool.connection_kwargs
    client = redis.Redis(host=kwargs["host"], port=kwargs["port"], protocol=3, single_connection_client=False)
    key = store.keys.job("tracked")
    store.redis.set(key, b"1")
    seen: list[Any] = []
    conn: Any = client.connection_pool.get_connection()
    try:
        conn._parser.set_invalidation_push_handler(seen.append)
        client.connection_pool.release(conn)
        assert send_once(client, [("CLIENT", "TRACKING", "ON"), ("GET", key)]) == [b"OK", b"1"]
        store.redis.set(key, b"2")  # the server queues an invalidation push ahead of our next reply
        assert send_once(client, [("GET", key)]) == [b"2"]
        assert seen and seen[0][0] == b"invalidate"
    finally:
        client.close()


def test_a_reply_that_does_not_come_times_out_and_closes_the_connection(store: JobStore) -> None:
    port = store.redis.connection_pool.connection_kwargs["port"]
    proxy = ChunkProxy(port, chunk=1 << 16, marker=b"HELD-REPLY", hold_after=0)
    try:
        client = redis.Redis.from_url(proxy.url, socket_timeout=0.3)
        key = store.keys.job("held-reply")
        store.redis.set(key, b"HELD-REPLY")
        with pytest.raises(redis.TimeoutError):
            send_once(client, [("GET", key)])
        assert all(c._sock is None for c in client.connection_pool._available_connections)  # closed
        proxy.release.set()
        assert send_once(client, [("GET", key)]) == [b"HELD-REPLY"]  # a fresh connection
    finally:
        proxy.close()
