"""A lean read of a redis-py pub/sub connection: one ``poll`` and one ``read`` per delivered message.

A waiter spends its last wake-up of a round trip (issue 16) reading one message from its pub/sub connection.
``PubSub.get_message(timeout=t)`` makes 8 system calls for that (bench/analysis.md, profiles 28 and 33): a
``poll`` in ``can_read``, a second ``poll`` and a ``recv(MSG_PEEK)`` to tell data from a closed socket, two
``ioctl`` calls toggling the socket's timeout around the read, and the read itself; a socket with a timeout
polls before each ``recv`` too (the peek's and the read's); and ~40 Python calls. :meth:`MessageReader.read`
reads the same bytes into the same connection's hiredis reader with ``poll`` + one ``readv`` of the socket (a
closed socket reads as 0 bytes: no peek needed), and hands a ``message`` on as a plain dict.

Everything that is not the steady state stays redis-py's, so its semantics are kept as they are: a connection
not (yet) made, a due health check (``health_check_interval``: the ``PING`` and the filtering of its answer),
any other connection than a plain TCP one read by hiredis (TLS: an ``SSLSocket`` must be read through its own
``recv``; Sentinel's connection class reads replies its own way) and, after a closed socket or a read error,
the reconnect with its retries and the re-subscription of every channel (redis-py's connect callback) all go
through ``PubSub.get_message``. Every reply that is not a ``message`` (subscribe and unsubscribe
confirmations, a ``pong``, a non-pub/sub push) is handed to redis-py's ``PubSub.handle_message`` (its
subscription bookkeeping) or push handling as before. Both parsers share one hiredis reader (the
connection's), so a message buffered by either is read by the next call of either: several messages in one
read are served from the buffer without a system call, and a message split across reads is completed by the
next ones.
"""

from __future__ import annotations

import os
import select
import time
from typing import Any, cast

import redis

try:  # redis-py's hiredis parser as the lean reads expect it (its reader's "need more" sentinel, as in redis-py 8)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA, _HiredisParser
except ImportError:  # pragma: no cover - another redis-py: every read goes redis-py's way
    NOT_ENOUGH_DATA = object()
    _HiredisParser = None  # type: ignore[assignment,misc]
#: For :mod:`jobs_core.resend`'s lean read of a call's replies (the same parser, the same sentinel)
HIREDIS_PARSER: Any = _HiredisParser
NEED_MORE: Any = NOT_ENOUGH_DATA

try:  # hiredis >= 3.2 marks RESP3 pushes with their own type (redis-py hands them to its push handlers)
    from hiredis import PushNotification as _Push
except ImportError:  # pragma: no cover - older hiredis: pushes are plain lists
    _Push = ()  # type: ignore[assignment,misc]

_MESSAGE = b"message"
#: The one connection class read the lean way: plain TCP (not TLS, not Sentinel's, which reads replies its own way)
_PLAIN = redis.connection.Connection
#: What a message comes as: an array (RESP2) or a push (RESP3)
_LISTS = (list,) if isinstance(_Push, tuple) else (list, _Push)


class MessageReader:
    """Reads the messages of one redis-py ``PubSub`` (one thread's): :meth:`read` is its
    ``get_message(timeout=...)``, lean in the steady state (module docstring)."""

    __slots__ = ("_fd", "_poll", "_sock", "pubsub")

    def __init__(self, pubsub: redis.client.PubSub) -> None:
        self.pubsub = pubsub
        self._sock: Any = None  # the socket _poll is registered for (a reconnect makes a new one)
        self._fd = -1
        self._poll: Any = None

    def read(self, timeout: float) -> dict[str, Any] | None:
        """The next message within ``timeout`` seconds, else None: what ``pubsub.get_message(timeout=timeout)``
        returns (a dict of ``type``, ``pattern``, ``channel``, ``data``), read with ``poll`` + one ``readv`` per
        delivered message in the steady state. Raises what ``get_message`` raises (a
        :class:`redis.ConnectionError` when Redis stays away)."""
        pubsub = self.pubsub
        conn: Any = pubsub.connection
        sock = getattr(conn, "_sock", None)
        parser = getattr(conn, "_parser", None)
        plain = type(conn) is _PLAIN  # (a flag, so that conn stays Any for mypy)
        if (not plain or sock is None or type(parser) is not _HiredisParser
                or not pubsub.subscribed
                or (conn.health_check_interval and time.monotonic() > conn.next_health_check)):
            return pubsub.get_message(timeout=timeout)  # type: ignore[no-any-return]  # redis-py's path
        reader = parser._reader
        if reader is None:  # pragma: no cover - a disconnect between the checks above
            return pubsub.get_message(timeout=timeout)
        response = reader.gets()
        if response is NOT_ENOUGH_DATA:
            if sock is not self._sock:
                self._sock, self._fd, self._poll = sock, sock.fileno(), select.poll()
                self._poll.register(self._fd, select.POLLIN)
            poll, fd, buffer = self._poll.poll, self._fd, cast(Any, parser._buffer)
            deadline = time.monotonic() + timeout
            while response is NOT_ENOUGH_DATA:
                # poll's timeout is in ms (rounded up by Python: a 0.2 ms rest waits, it does not spin)
                if not poll(max(0.0, deadline - time.monotonic()) * 1000):
                    return None  # a partial message stays in the reader for the next call
                try:
                    n = os.readv(fd, [buffer])
                except BlockingIOError:  # readable was a false alarm (the socket's fd is non-blocking)
                    continue
                except OSError:  # reset: as a close
                    n = 0
                if n == 0:  # the server closed it (CLIENT KILL, a restart): redis-py reconnects, re-subscribes
                    conn.disconnect()
                    return pubsub.get_message(  # type: ignore[no-any-return]
                        timeout=max(0.0, deadline - time.monotonic()))
                reader.feed(buffer, 0, n)
                response = reader.gets()
        if conn.health_check_interval:  # as Connection.read_response: the connection just proved alive
            conn.next_health_check = time.monotonic() + conn.health_check_interval
        if (type(response) in _LISTS and len(response) == 3 and response[0] == _MESSAGE
                and pubsub.channels.get(response[1]) is None):  # the waiter's case: a channel without handler
            return {"type": "message", "pattern": None, "channel": response[1], "data": response[2]}
        return _other(pubsub, parser, response)


def _other(pubsub: redis.client.PubSub, parser: Any, response: Any) -> dict[str, Any] | None:
    """Any reply but a plain message, as redis-py's ``parse_response`` + ``handle_message`` treat it."""
    if isinstance(response, Exception):  # an error reply (a protocol error was raised by the reader)
        raise response
    if isinstance(response, _Push):  # a RESP3 push: redis-py's push handling (maintenance, invalidation)
        response = parser.handle_push_response(response)
    if pubsub.is_health_check_response(response):  # a PING's answer sent by an earlier health check
        pubsub.health_check_response_counter -= 1
        return None
    return pubsub.handle_message(response)  # type: ignore[no-any-return,no-untyped-call]
