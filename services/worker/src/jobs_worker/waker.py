"""A partially busy worker's wait for work: a blocking ``BLPOP`` on its wake lists, on a connection of its own.

A worker with every slot idle blocks on its wake lists on its ordinary connection (``wait_and_claim``). One
with some slots busy cannot: it must hear its children. It looked for work every 50 ms instead (a claim per
look, ~19 per idle second; a job submitted meanwhile waited ~50 ms for it: profile 31). This keeps a
``BLPOP`` outstanding on a second connection, whose socket the worker waits on in the same ``wait()`` as
its children's pipes: a wake token wakes it at once, and an idle second costs one ``BLPOP``.

The guarantee kept: a wake token this wait takes leads to a claim, or is passed on (pushed back). Every
reply the worker cannot be sure of (a connection error, a reply that does not come in time, the wait cut
short at a stop) counts as a token that may have been taken.
"""

from __future__ import annotations

import logging
from typing import Any

import redis

log = logging.getLogger("jobs.worker")

#: longest ``BLPOP``: an idle second costs one, and the claim that follows each (as an idle worker's) promotes
#: due delayed jobs and finds work whose token another worker's claim took
WAIT_SECONDS = 1.0
#: a reply this much later than the wait's timeout is taken for lost (a silently dead connection)
LATE_SECONDS = 5.0
#: after the connection could not be made, the worker looks for work as before (every 50 ms) this long
RETRY_SECONDS = 5.0


class Waker:
    """One outstanding ``BLPOP`` on ``keys`` (the wake lists of the worker's queues) at a time.

    The worker :meth:`arm`\\ s it when it has free slots and the queues were empty; waits on
    :meth:`waitable` beside its children; calls :meth:`read` when that is ready; and takes the outcome with
    :meth:`take`: ``None`` (nothing yet), or the reply (a wake list's name, ``""`` when the wait timed out,
    ``"?"`` when it is unknown whether a token was taken).
    """

    def __init__(self, client: redis.Redis, keys: list[str]) -> None:
        self.client = client
        self.keys = keys
        self.conn: Any = None
        self.client_id: int | None = None
        self.sent_at: float | None = None  # a BLPOP is outstanding since (monotonic)
        self.news: str | None = None
        self.retry_at = 0.0

    @property
    def pending(self) -> bool:
        """A ``BLPOP`` is outstanding: its reply is still to be read."""
        return self.sent_at is not None

    def arm(self, now: float) -> bool:
        """Send the ``BLPOP`` unless one is outstanding or a reply is still to be taken; False when the
        connection could not be made (the caller looks for work as before)."""
        if self.sent_at is not None or self.news is not None:
            return True
        if now < self.retry_at:
            return False
        sending = False
        try:
            if self.conn is None:
                self.conn = self.client.connection_pool.get_connection()
            conn = self.conn
            if getattr(conn, "_sock", None) is None or self.client_id is None:
                conn.connect()
                # its id lets a stop cut the wait short (CLIENT UNBLOCK from the worker's other connection)
                conn.send_command("CLIENT", "ID")
                self.client_id = int(conn.read_response())
            sending = True
            conn.send_command("BLPOP", *self.keys, WAIT_SECONDS)
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError) as e:
            # before the BLPOP no token can have been taken; a send that failed may still have reached Redis
            self._drop()
            self.news = "?" if sending else None
            self.retry_at = now + RETRY_SECONDS
            log.warning("could not start the wait for work on a second connection; looking every 50 ms",
                        extra={"error": str(e)})
            return False
        self.sent_at = now
        return True

    def waitable(self) -> Any:
        """What ``multiprocessing.connection.wait`` watches for the reply (the socket), or None."""
        if self.sent_at is None:
            return None
        return getattr(self.conn, "_sock", None)

    def read(self) -> None:
        """Read the outstanding reply (the socket is readable, or :meth:`settle` cut the wait short)."""
        if self.sent_at is None:
            return
        self.sent_at = None
        try:
            reply = self.conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError, OSError):
            # UNBLOCKED (a demoted primary), READONLY, a reset: the BLPOP may have popped a token
            self._drop()
            self.news = "?"
            return
        self.news = "" if reply is None else _text(reply[0])

    def overdue(self, now: float) -> bool:
        """The reply is long past the wait's timeout: the connection is taken for dead (the token unknown)."""
        if self.sent_at is None or now - self.sent_at < WAIT_SECONDS + LATE_SECONDS:
            return False
        self.sent_at = None
        self._drop()
        self.news = "?"
        return True

    def take(self) -> str | None:
        """The last reply not taken yet (see the class), once."""
        news, self.news = self.news, None
        return news

    def settle(self) -> str | None:
        """Cut an outstanding wait short (a stop) and take its reply: what :meth:`take` says."""
        if self.sent_at is not None:
            try:
                if self.client_id is not None:
                    self.client.client_unblock(self.client_id)
            except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
                pass  # then the reply comes at the wait's timeout, within the read's socket timeout
            self.read()
        return self.take()

    def pass_on(self, news: str) -> None:
        """Push back the token a reply brought (``news`` from :meth:`take`) that no claim follows: one
        token per wake list, as ``enqueue_one.lua`` keeps it; an unknown one to every wake list."""
        keys = self.keys if news == "?" else [news] if news else []
        for key in keys:
            if self.client.rpush(key, "1") > 1:
                self.client.rpop(key)

    def close(self) -> None:
        """Give the connection back, closed (a reply may be unread on it)."""
        self.sent_at = None
        self._drop()

    def _drop(self) -> None:
        conn, self.conn, self.client_id = self.conn, None, None
        if conn is not None:
            conn.disconnect()
            self.client.connection_pool.release(conn)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
