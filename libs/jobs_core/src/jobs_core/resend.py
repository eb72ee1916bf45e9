"""Explicit re-sends of the scripts that answer a re-sent call as its first run (``ENQUEUE``, ``FINISH_CLAIM``).

A call whose reply was lost (a timeout, a dropped connection) may have run in Redis or not; the same call
is then sent again, and the script answers it as its first run did (a record under the call's first job
id, the worker's claim memo). That check costs a command (``EXISTS``, ``GET``) on every call, although
almost every call is a first send. So the caller tells the script which send this is: the send number
(1 = first, 2.. = re-sends) is one of its arguments, and the script checks only when it is not 1.

That is exact only if no send can reach Redis with the number 1 twice. redis-py's own ``Retry`` re-sends
the very same command after a connection error, so these calls never go through it: :func:`send_once`
writes the commands on a pooled connection and reads the replies once (a connection error or timeout
closes that connection and is raised), and :func:`resent` sends again, numbered, with the backoff the
client's ``Retry`` would have used (:data:`RESENDS` more times).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, NamedTuple, TypeVar

import hiredis
import redis
import redis.connection
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.exceptions import NoScriptError

from jobs_core import tracing
from jobs_core.config import Settings
from jobs_core.connection import NOSCRIPT_RERUNS, check_confirmation
from jobs_core.pubsub_read import HIREDIS_PARSER, NEED_MORE
from jobs_core.resend_policy import BACKOFF_BASE, BACKOFF_CAP, RESENDS

T = TypeVar("T")

#: Re-sends after the first send, and their backoff: as the clients of :func:`jobs_core.connection.connect`.
BACKOFF = ExponentialBackoff(cap=BACKOFF_CAP, base=BACKOFF_BASE)
#: The errors after which a call may or may not have run (the reply never came).
LOST = (redis.ConnectionError, redis.TimeoutError)
#: redis-py's packer of connections that pack with hiredis (a dependency of jobs-core): see :func:`_pack`
_HIREDIS_PACKER: Any = getattr(redis.connection, "HiredisRespSerializer", None)
#: The one connection class read the lean way (:func:`_read`): plain TCP, replies as they come
_PLAIN = redis.connection.Connection
#: hiredis' type of a RESP3 push (hiredis >= 3.2; a dependency of jobs-core)
_PUSH: Any = getattr(hiredis, "PushNotification", None)


class NotSent(redis.ConnectionError):
    """No connection to Redis could be made for this send: nothing of it was sent (not re-sent again)."""


class Packed(NamedTuple):
    """A command already in the Redis protocol, for :func:`send_once` (``name``: how its reply is read;
    ``argc``: its argument count). For calls that repeat most of their arguments every time: those are
    packed once (hiredis formats every argument of every call anew, with an ``sprintf`` each)."""

    name: str
    data: bytes
    argc: int


def bulk(args: Iterable[Any]) -> bytes:
    """``args`` as bulk strings of the Redis protocol, encoded as redis-py encodes them (str as UTF-8, bytes as
    they are, int and float by ``repr``; nothing else)."""
    out = []
    for a in args:
        if isinstance(a, str):
            b = a.encode()
        elif isinstance(a, bytes | bytearray | memoryview):
            b = bytes(a)
        elif isinstance(a, int | float) and not isinstance(a, bool):
            b = repr(a).encode()
        else:
            raise TypeError(f"cannot send {type(a).__name__} to Redis")
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def send_once(client: redis.Redis, commands: Sequence[Sequence[Any]], held: HeldConnection | None = None,
              ) -> list[Any]:
    """Send ``commands`` on one connection of ``client``'s pool, once, and read their replies in order.

    No automatic retry: a connection error or timeout closes the connection and is raised (the commands may
    have run); :class:`NotSent` when no connection could be made (they did not). An error reply is
    returned in its place (as ``pipeline.execute(raise_on_error=False)``). A Sentinel-managed connection
    still turns ``READONLY`` (a demoted primary) into a connection error.
    """
    if tracing.enabled():
        with _redis_span(commands):
            return _send_once(client, commands, held)
    return _send_once(client, commands, held)


def _redis_span(commands: Sequence[Sequence[Any]]) -> Any:
    """The client span redis-py's instrumentation would have made (it wraps ``execute_command``, which
    :func:`send_once` does not go through): a job's trace keeps its Redis call."""
    from opentelemetry import trace

    names = " ".join(str(c[0]) for c in commands)
    first = commands[0]
    return trace.get_tracer("jobs_core.resend").start_as_current_span(
        names, kind=trace.SpanKind.CLIENT,
        attributes={"db.system": "redis", "db.statement": names,
                    "db.redis.args_length": first.argc if isinstance(first, Packed) else len(first)})


class HeldConnection:
    """One connection of a client's pool kept between the calls of a caller whose calls never overlap (a
    :class:`~jobs_core.group_commit.GroupCommit`: one round trip in flight per process at a time).

    Checking a connection out of redis-py's pool and back costs about as much client CPU as the round trip
    itself (a lock each way, its connection-count bookkeeping, a ``poll`` for stale data: ~10 of ~18 µs for a
    ``PING``; bench/analysis.md, profile 30). A held connection skips that; it is given back (closed) after
    any error, so the next call checks a fresh one out exactly as before, and one idle for over
    :attr:`IDLE_CHECK_SECONDS` is checked for stale data as the pool would (a server that closed it).
    A forked child never uses its parent's: it checks out its own.
    """

    IDLE_CHECK_SECONDS = 1.0

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._conn: Any = None
        self._used = 0.0
        self._pid = os.getpid()

    def take(self) -> Any:
        """The held connection, or one checked out of the pool (connected) now; :class:`NotSent` when no
        connection could be made."""
        conn, now = self._conn, time.monotonic()
        if conn is not None and (self._pid != _PID[0] or (now - self._used > self.IDLE_CHECK_SECONDS
                                                         and not _still_clean(conn))):
            self.drop()
            conn = None
        try:
            if conn is None:
                conn = self.client.connection_pool.get_connection()  # connects: nothing is sent yet
                self._conn, self._pid = conn, _PID[0]
            elif conn._sock is None:  # closed under us (the pool disconnected its connections)
                conn.connect()
        except LOST as e:
            self.drop()
            raise NotSent(str(e)) from e
        self._used = now
        return conn

    def drop(self) -> None:
        """Close the held connection (a reply may be left unread on it) and give it back to the pool."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == _PID[0]:
            conn.disconnect()
            self.client.connection_pool.release(conn)


#: This process's id, kept current across forks (``os.getpid()`` is a system call).
_PID = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


def _still_clean(conn: Any) -> bool:
    try:
        return not conn.can_read()
    except (redis.ConnectionError, OSError):
        return False


def _send_once(client: redis.Redis, commands: Sequence[Sequence[Any]], held: HeldConnection | None = None,
               ) -> list[Any]:
    pool = client.connection_pool
    conn: Any
    if held is not None:
        conn = held.take()
    else:
        try:
            conn = pool.get_connection()  # connects (redis-py retries the connect itself: nothing is sent yet)
        except LOST as e:
            raise NotSent(str(e)) from e
    try:
        packed = _pack(conn, commands)
        sock = conn._sock
        if (type(conn) is not _PLAIN or type(conn._parser) is not HIREDIS_PARSER or sock is None
                or (conn.health_check_interval and time.monotonic() > conn.next_health_check)):
            # redis-py's way: TLS, Sentinel's connection (READONLY read as a connection error), another
            # parser, a due health check
            conn.send_packed_command(packed)
            read: Callable[[Any, str], Any] = client.parse_response
        else:
            _write(conn, sock, packed)
            read = partial(_read, client)
        out: list[Any] = []
        for c in commands:
            try:
                out.append(read(conn, c[0]))
            except redis.ResponseError as e:
                out.append(e)
        return out
    except BaseException:
        if held is not None:
            held.drop()
        else:
            conn.disconnect()  # a reply may be left unread on it: never hand it to another call
        raise
    finally:
        if held is None:
            pool.release(conn)


def _write(conn: Any, sock: Any, packed: list[Any]) -> None:
    """``conn.send_packed_command(packed)`` with one ``write`` of the socket for a request that fits its
    buffer (a lone submission, a finish): a socket with a timeout polls before every ``send``, one
    system call more per call on the path of every round trip (bench/analysis.md, profile 33). What the
    buffer did not take, and any error, goes redis-py's way (its timeout, its errors, the connection closed)."""
    data = packed[0] if len(packed) == 1 else b"".join(packed)
    try:
        n = os.write(sock.fileno(), data)  # non-blocking under a timeout: never waits
    except BlockingIOError:
        n = 0
    except OSError as e:
        conn.disconnect()
        raise redis.ConnectionError(f"Error {e.errno} while writing to socket. {e.strerror}.") from e
    if n < len(data):
        conn.send_packed_command([memoryview(data)[n:]], check_health=False)


def _read(client: redis.Redis, conn: Any, name: str) -> Any:
    """``client.parse_response(conn, name)`` reading the socket with ``poll`` + one ``readv`` into the
    connection's own hiredis reader (the socket's timed ``recv`` polls again first): the same reply, RESP3
    pushes handed to redis-py's push handling, the connection's timeout, and a closed connection or a
    timeout raised (connection closed) as redis-py raises them."""
    parser = conn._parser
    reader = parser._reader
    response = reader.gets()
    while response is NEED_MORE or type(response) is _PUSH:
        if response is not NEED_MORE:  # a push before the reply (an invalidation, a maintenance note)
            parser.handle_push_response(response)
        else:
            fd = conn._sock.fileno()
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            timeout = conn.socket_timeout
            if not poll.poll(None if timeout is None else timeout * 1000):
                conn.disconnect()
                raise redis.TimeoutError(f"Timeout reading from {conn.host}:{conn.port}")
            try:
                n = os.readv(fd, [parser._buffer])
            except BlockingIOError:  # a false alarm: poll again
                n = -1
            except OSError as e:
                conn.disconnect()
                raise redis.ConnectionError(f"Error while reading from {conn.host}:{conn.port} : {e.args}") from e
            if n == 0:
                conn.disconnect()
                raise redis.ConnectionError("Connection closed by server.")
            if n > 0:
                reader.feed(parser._buffer, 0, n)
        response = reader.gets()
    if conn.health_check_interval:  # as Connection.read_response: the connection just proved alive
        conn.next_health_check = time.monotonic() + conn.health_check_interval
    if isinstance(response, redis.ConnectionError):
        conn.disconnect()
        raise response
    if isinstance(response, redis.ResponseError):
        raise response
    callback = client.response_callbacks.get(name)  # type: ignore[no-untyped-call]
    return callback(response) if callback is not None else response


def _pack(conn: Any, commands: Sequence[Sequence[Any]]) -> Any:
    """The commands in the Redis protocol, in one write (:class:`Packed` ones as they are).

    On a connection that packs with hiredis, the commands go to ``hiredis.pack_command`` as they are: redis-py's
    packer first walks every argument in Python to turn ``bytearray``/``memoryview`` into bytes (which these
    calls never send), ~75 generator steps and ``isinstance`` calls for a lone submission's 35 arguments, a
    third of the Python a library submission runs before its bytes leave (issue 16, library round trip).
    Same bytes on the wire; anything hiredis refuses goes the ordinary way (which converts or raises)."""
    if _HIREDIS_PACKER is not None and type(getattr(conn, "_command_packer", None)) is _HIREDIS_PACKER:
        try:
            if len(commands) == 1:  # a lone call (a submission, a finish): no generator to join
                c = commands[0]
                return [c.data if isinstance(c, Packed) else _hiredis_pack(c)]
            return [b"".join(c.data if isinstance(c, Packed) else _hiredis_pack(c) for c in commands)]
        except (TypeError, ValueError):
            pass
    if not any(isinstance(c, Packed) for c in commands):
        return conn.pack_commands(commands)
    return [b"".join(c.data if isinstance(c, Packed) else b"".join(conn.pack_command(*c)) for c in commands)]


def _hiredis_pack(command: Sequence[Any]) -> bytes:
    """One command through hiredis; a name of two words (``CONFIG GET``) is left to redis-py, which splits it."""
    if " " in command[0]:
        raise ValueError("a command name of two words")
    data: bytes = hiredis.pack_command(tuple(command))
    return data


def resent(send: Callable[[int], T], first: int = 1) -> T:
    """``send(n)`` with ``n`` = ``first``, then ``n + 1``, ... after each connection error or timeout (a lost
    reply), up to :data:`RESENDS` re-sends; the last error is raised. ``send`` must pass ``n`` to the script,
    which answers a send numbered above 1 as the call's first run did. A send that could not connect
    (:class:`NotSent`; redis-py already retried the connect) ends the call with its error, as redis-py's
    own retry did: a Redis that is down fails the call within the same time as before."""
    n = first
    while True:
        try:
            return send(n)
        except NotSent:
            raise
        except LOST:
            if n - first >= RESENDS:
                raise
            n += 1
            time.sleep(BACKOFF.compute(n - first))


def script_once(client: redis.Redis, script: Script, keys: Sequence[Any], args: Sequence[Any],
                settings: Settings, fence_key: str, packed: Packed | None = None,
                held: HeldConnection | None = None) -> Any:
    """One send of ``script`` (``EVALSHA``) with :func:`send_once`, its reply or its error raised
    (``packed``: that same ``EVALSHA`` already in the Redis protocol, sent instead; ``held``: the caller's
    connection, see :class:`HeldConnection`).

    ``NOSCRIPT`` (a restarted Redis, a promoted replica: the script did not run) loads it and sends again.
    With ``JOBS_ACK_REPLICAS`` the fence write, ``WAIT`` and ``WAITAOF`` follow on the same connection and
    the reply is returned only once confirmed (see :class:`jobs_core.connection.ReplicatedScript`).
    """
    replicas = settings.ack_replicas
    for rerun in range(NOSCRIPT_RERUNS + 1):
        commands: list[tuple[Any, ...]] = [packed or ("EVALSHA", script.sha, len(keys), *keys, *args)]
        if replicas:
            timeout_ms = max(1, round(settings.ack_timeout_seconds * 1000))
            commands += [("SET", fence_key, b"1"), ("WAIT", replicas, timeout_ms),
                         ("WAITAOF", 1, replicas, timeout_ms)]
        out = send_once(client, commands, held)
        if isinstance(out[0], NoScriptError) and rerun < NOSCRIPT_RERUNS:
            client.script_load(script.script)
            continue
        if isinstance(out[0], Exception):
            raise out[0]
        if replicas:
            check_confirmation(out[-1], replicas)
        return out[0]
    raise AssertionError("unreachable")  # pragma: no cover
