"""The slot child finishing its own job: one process hop off an idle worker's round trip.

A job claimed when the queues were empty (a short claim: the worker would go idle after it anyway) is
flagged in its job message; when its task returns a result (and sent no progress), the child stores the
success itself with FINISH_CLAIM (claim 0) on its own connection, then tells the worker "finished" (or
"lost" when the script refused the attempt as no longer this worker's). The worker's Python between the
child's result and its finish call, and one wake-up, leave the path (``bench/analysis.md``, profiles 28
and 32). Everything else — errors, retries, progress, a job claimed by a full claim — the worker finishes
as before, with its refill claim in the same call.

Guarantees (each has a kill-point test in ``tests/worker/test_child_finish.py``):

- Lease ownership stays the script's check (worker id + attempt): the child sends the worker's id. A
  timeout, cancel or crash the worker stores for the same attempt after the child's finish ran is refused
  as stale, and the child's finish after the worker's is refused the same way.
- The call is sent as :mod:`jobs_core.resend` sends the worker's: numbered (``<token>:<n>``), re-sent after
  a lost reply up to :data:`RESENDS` times with the same backoff, and answered by the script from the claim
  memo when it already ran. The child's memo key is its own (:func:`memo_owner`), so its calls and the
  worker's never replace each other's memo. ``JOBS_ACK_REPLICAS``: the fence write, ``WAIT`` and
  ``WAITAOF`` follow on the same connection, as :func:`jobs_core.resend.script_once` sends them.
- Anything else — no connection, ``NOSCRIPT`` (a restarted Redis: the script did not run), an error reply,
  a write not confirmed on the replicas, re-sends used up — hands the result to the worker as today
  (``None`` from :meth:`Finisher.finish`): the worker keeps it until Redis takes it, and its finish is
  refused as stale if the child's call did run after all.

This module is imported by every slot child: no redis-py (which imports OpenTelemetry), only the
standard library and hiredis's reply parser (``ssl`` only for a TLS connection).
"""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import hiredis
from jobs_core.resend_policy import BACKOFF_BASE, BACKOFF_CAP, RESENDS

if TYPE_CHECKING:  # worker side only: never imported by a child (redis-py pulls OpenTelemetry in)
    from jobs_core.store import JobStore



@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where the worker's own connection goes (from its redis-py pool): what the child connects to."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line or an error message
    tls: bool = False
    tls_ca_file: str | None = None
    tls_check_hostname: bool = True
    connect_timeout: float = 5.0
    timeout: float | None = 10.0


@dataclass(frozen=True, slots=True)
class FinishRecipe:
    """What a slot child needs to finish a job itself: the address, the FINISH_CLAIM call up to the finish's
    fields (``prefix``: the worker's id, its queues' keys, claim 0, the child's own memo key), and the
    replicated acknowledgement's settings."""

    address: RedisAddress
    prefix: bytes = field(repr=False)
    ack_replicas: int = 0
    ack_timeout_ms: int = 1000
    fence_key: str = ""


def memo_owner(worker_id: str, slot: int) -> str:
    """The name the child's claim memo is kept under: its own, beside the worker's (``worker_id``)."""
    return f"{worker_id}/slot{slot}"


def recipe_for(store: JobStore, worker_id: str, slot: int) -> FinishRecipe | None:
    """The recipe for slot ``slot``'s child (worker side), or None when its finish stays the worker's: a
    connection other than plain TCP or TLS to one server (Sentinel, a Unix socket), where the child could
    not follow what redis-py does for the worker."""
    import redis  # the worker's own modules have it already

    pool = store.redis.connection_pool
    kwargs = pool.connection_kwargs
    cls = getattr(pool, "connection_class", None)
    if type(pool) is not redis.ConnectionPool or cls not in (redis.Connection, redis.SSLConnection):
        return None
    tls = cls is redis.SSLConnection
    if tls and kwargs.get("ssl_certfile"):
        return None  # client certificates: not followed here
    address = RedisAddress(
        host=kwargs.get("host", "localhost"), port=int(kwargs.get("port", 6379)), db=int(kwargs.get("db", 0) or 0),
        username=kwargs.get("username"), password=kwargs.get("password"), tls=tls,
        tls_ca_file=kwargs.get("ssl_ca_certs"), tls_check_hostname=bool(kwargs.get("ssl_check_hostname", True)),
        connect_timeout=float(kwargs.get("socket_connect_timeout") or 5.0), timeout=kwargs.get("socket_timeout"),
    )
    prefix = store.finish_call_prefix(worker_id, store.keys.claim_memo(memo_owner(worker_id, slot)))
    s = store.settings
    return FinishRecipe(address, prefix, s.ack_replicas, max(1, round(s.ack_timeout_seconds * 1000)),
                        store.keys.ack_fence)


def _bulk(*args: str | bytes | int) -> bytes:
    """Bulk strings of the Redis protocol (str as UTF-8, int in decimal: as redis-py sends them)."""
    out = []
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _command(*args: str | bytes | int) -> bytes:
    return b"*%d\r\n%s" % (len(args), _bulk(*args))


class _Lost(Exception):
    """The connection broke or timed out after the call was sent: it may have run."""


class _NotSent(Exception):
    """No connection could be made: nothing was sent."""


class Finisher:
    """The child's side: one connection of its own, made on first use and kept."""

    def __init__(self, recipe: FinishRecipe) -> None:
        self.recipe = recipe
        self._sock: Any = None
        self._reader: Any = None

    def finish(self, job_id: str, attempt: int, data: bytes, media_type: str,
               worker_gone: Callable[[], bool]) -> tuple[str, str] | None:
        """Store attempt ``attempt`` of ``job_id`` as succeeded with ``data``: ``("finished", status)``,
        ``("lost", current status)`` when the script refused it as no longer this worker's, or None when
        the worker must finish it (see the module's docstring).

        ``worker_gone`` is asked before every send: a child outlives a worker killed with SIGKILL until it
        next reads its pipe (the fork server, whose death would kill it, waits for its children), and an
        orphan must not store what its worker can no longer count; the lease then expires as for any job
        of a dead worker."""
        token = secrets.token_hex(8)
        fields = (job_id, attempt, "succeeded", data, media_type, "", 0)
        for n in range(1, RESENDS + 2):
            if worker_gone():
                return None
            try:
                return self._send(fields, f"{token}:{n}")
            except _NotSent:
                return None
            except _Lost:
                self.close()
                if n > RESENDS:
                    return None
                time.sleep(min(BACKOFF_CAP, BACKOFF_BASE * 2 ** n))
        return None  # pragma: no cover (the loop returns)

    def _send(self, fields: tuple[Any, ...], last: str) -> tuple[str, str] | None:
        r = self.recipe
        commands = [r.prefix + _bulk(*fields, last)]
        if r.ack_replicas:
            commands += [_command("SET", r.fence_key, b"1"), _command("WAIT", r.ack_replicas, r.ack_timeout_ms),
                         _command("WAITAOF", 1, r.ack_replicas, r.ack_timeout_ms)]
        sock = self._connected()
        try:
            sock.sendall(b"".join(commands))
            replies = [self._reply() for _ in commands]
        except (OSError, _Lost) as e:
            raise _Lost(str(e)) from None
        reply = replies[0]
        if isinstance(reply, hiredis.ReplyError):
            return None  # NOSCRIPT (it did not run), or an error the worker's own call meets and reports
        if r.ack_replicas and not _confirmed(replies[-1], r.ack_replicas):
            return None  # not confirmed in time: the worker's call repeats it, as after its own
        status = reply[0][0].decode()
        if status.startswith("stale:"):
            return ("lost", status[6:])
        return ("finished", status)

    def _reply(self) -> Any:
        reader = self._reader
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = self._sock.recv(65536)
            if not data:
                raise _Lost("the connection was closed")
            reader.feed(data)

    def _connected(self) -> Any:
        if self._sock is not None:
            return self._sock
        a = self.recipe.address
        try:
            sock = socket.create_connection((a.host, a.port), timeout=a.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if a.tls:
                import ssl

                context = ssl.create_default_context(cafile=a.tls_ca_file)
                context.check_hostname = a.tls_check_hostname
                sock = context.wrap_socket(sock, server_hostname=a.host)
            sock.settimeout(a.timeout)
            self._sock, self._reader = sock, hiredis.Reader()
            setup = []
            if a.password is not None:
                setup.append(_command("AUTH", *((a.username,) if a.username else ()), a.password))
            if a.db:
                setup.append(_command("SELECT", a.db))
            if setup:
                sock.sendall(b"".join(setup))
                if any(isinstance(self._reply(), hiredis.ReplyError) for _ in setup):
                    raise _NotSent("AUTH or SELECT refused")
        except (OSError, _Lost, _NotSent) as e:
            self.close()
            raise _NotSent(type(e).__name__) from None
        return sock

    def close(self) -> None:
        """Drop the connection (a reply may be left unread on it): the next call makes a new one."""
        sock, self._sock, self._reader = self._sock, None, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _confirmed(reply: Any, replicas: int) -> bool:
    """Whether ``WAITAOF 1 <replicas>``'s reply confirms the write (as
    :func:`jobs_core.connection.check_confirmation` decides)."""
    if not isinstance(reply, list) or len(reply) != 2:
        return False
    local, remote = (int(x) for x in reply)
    return local >= 1 and remote >= replicas
