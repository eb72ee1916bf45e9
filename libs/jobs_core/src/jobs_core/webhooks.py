"""Webhooks: signed POSTs on every terminal status of a job that names a ``callback_url``.

The event is written to the outbox stream (:attr:`Keys.webhook_outbox`) by the very script that makes the
job terminal (``lua/includes/release.lua``), so a crash can neither lose it nor emit one for a transition
that did not happen. A :class:`Dispatcher` thread in each API process reads the outbox through a consumer
group, and every event being worked on has its next attempt time in one zset (:attr:`Keys.webhook_due`)
and its failed attempts in a hash, both in Redis and updated in the step that records an attempt
(``webhook_attempt.lua``): several processes share the work on one clock, an event being attempted is
leased (a dead dispatcher's is taken by another after the lease), and a retry keeps its backoff through a
dispatcher's death. Delivery is at-least-once: an event is acknowledged (and deleted) only after a 2xx
answer, a refusal, or once its deadline has passed; receivers dedupe on ``webhook-id`` (``<job id>:<n>``,
n counting the job's terminal transitions).

Requests follow Standard Webhooks (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``), signed
with the tenant's secret (``whsec_...``) and, during the grace period after a rotation, also with the
previous one. Outbound calls are SSRF-safe: ``https`` only unless allowed, every resolved address must be
public unless allowed, the connection goes to the address that was checked (no second DNS lookup),
redirects are not followed, and time and response size are bounded.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

import redis
from standardwebhooks.webhooks import Webhook

from jobs_core import scripts
from jobs_core.config import Settings
from jobs_core.errors import UnsafeWebhookUrl
from jobs_core.keys import WEBHOOK_GROUP
from jobs_core.loop import PassLoop
from jobs_core.serialization import dumps, loads
from jobs_core.store import JobStore

log = logging.getLogger("jobs_core.webhooks")

MAX_URL_LENGTH = 2048
#: Bytes of a receiver's answer read at most (the rest is ignored; the connection is closed).
MAX_RESPONSE_BYTES = 64 * 1024
#: Delivery attempts kept on a job's record (the latest ones).
ATTEMPTS_KEPT = 20
#: Longest wait between two attempts of one event (the backoff doubles up to it).
MAX_BACKOFF_SECONDS = 3600.0
#: Outcomes of :class:`Dispatcher` attempts, as counted by ``jobs_webhook_deliveries_total{outcome}``.
OUTCOMES = ("delivered", "failed", "refused", "expired")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked callback URL: where to connect and what to ask for."""

    scheme: str
    host: str
    port: int
    path: str


def check_url(url: str, *, allow_http: bool) -> Target:
    """Parse a callback URL; :class:`UnsafeWebhookUrl` unless it is an absolute ``https`` (or, allowed,
    ``http``) URL with a host and no credentials. Addresses are checked at delivery (:func:`resolve`)."""
    if len(url) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 0x20 for c in url):
        raise UnsafeWebhookUrl(f"callback_url must be at most {MAX_URL_LENGTH} characters without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UnsafeWebhookUrl(f"callback_url is not a valid URL: {e}") from e
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes:
        raise UnsafeWebhookUrl(f"callback_url must be {' or '.join(s + '://' for s in schemes)}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise UnsafeWebhookUrl("callback_url needs a host and may not carry credentials")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path)


def is_public(ip: IPAddress) -> bool:
    """Whether ``ip`` is a public unicast address (not private, loopback, link-local, multicast, reserved)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_literal(target: Target, *, allow_private: bool) -> None:
    """At submission: refuse a host that is itself a non-public IP address (names are resolved later)."""
    try:
        ip = ipaddress.ip_address(target.host)
    except ValueError:
        return
    if not allow_private and not is_public(ip):
        raise UnsafeWebhookUrl(f"callback_url points to a non-public address ({ip})")


def resolve(target: Target, *, allow_private: bool) -> str:
    """The address to connect to: the first one ``target.host`` resolves to, after checking that EVERY
    one is public (unless allowed): a name answering both a public and a private address is refused."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UnsafeWebhookUrl(f"cannot resolve {target.host}: {e}") from e
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeWebhookUrl(f"{target.host} has no address")
    if not allow_private:
        bad = [str(a) for a in addresses if not is_public(a)]
        if bad:
            raise UnsafeWebhookUrl(f"{target.host} resolves to a non-public address ({bad[0]})")
    return str(addresses[0])


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to a given, already checked, address (the Host header still names the host)."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to a given, already checked, address; the certificate is verified against the host name."""

    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(target: Target, ip: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST ``body`` to ``target`` at ``ip``; the status code (redirects are answers, never followed).
    At most :data:`MAX_RESPONSE_BYTES` of the answer are read, within ``timeout`` overall."""
    cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = cls(target.host, target.port, ip, timeout)
    give_up = time.monotonic() + timeout
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        resp = conn.getresponse()
        left = MAX_RESPONSE_BYTES
        while left > 0 and time.monotonic() < give_up:
            chunk = resp.read(min(left, 8192))
            if not chunk:
                break
            left -= len(chunk)
        return resp.status
    finally:
        conn.close()


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form ``whsec_<base64 of 24 random bytes>``."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class WebhookSecrets:
    """Per-tenant signing secrets in :attr:`Keys.webhook_secrets` (never logged)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._rotate = store.redis.register_script(scripts.ROTATE_WEBHOOK_SECRET)

    def rotate(self, tenant: str) -> str:
        """Make a new current secret for ``tenant`` and return it; the previous one keeps signing for
        ``JOBS_WEBHOOK_SECRET_GRACE_SECONDS``."""
        grace_ms = int(self.store.settings.webhook_secret_grace_seconds * 1000)
        out = self._rotate(keys=[self.store.keys.webhook_secrets], args=[tenant, new_secret(), grace_ms])
        return out.decode() if isinstance(out, bytes) else str(out)

    def signing(self, tenant: str, now_ms: int) -> list[str]:
        """The secrets to sign with now: current (created on first use), and previous within its grace."""
        key = self.store.keys.webhook_secrets
        raw = self.store.redis.hget(key, tenant)
        if raw is None:
            self.store.redis.hsetnx(key, tenant, dumps({"current": new_secret()}).decode())
            raw = self.store.redis.hget(key, tenant)
        entry = cast(dict[str, Any], loads(cast(bytes, raw)))
        out = [str(entry["current"])]
        if entry.get("previous") and int(entry.get("previous_until") or 0) > now_ms:
            out.append(str(entry["previous"]))
        return out


def sign(secret_list: list[str], event_id: str, when: datetime, body: str) -> str:
    """The ``webhook-signature`` header: one ``v1,<sig>`` per secret, space separated."""
    return " ".join(Webhook(s).sign(event_id, when, body) for s in secret_list)


class Dispatcher(PassLoop):
    """A daemon thread delivering the outbox's events (one consumer of the group; any number may run)."""

    def __init__(
        self, store: JobStore, name: str, observe: Callable[[str], None] | None = None, batch: int = 10
    ) -> None:
        # no pause between passes (a pass with nothing due blocks on the outbox itself); 1 s after an error
        super().__init__("jobs-webhooks", "webhooks", log, interval=0.0, retry_seconds=1.0)
        self.store = store
        self.consumer = name
        self.settings: Settings = store.settings
        self.secrets = WebhookSecrets(store)
        self._observe = observe
        self._batch = batch
        self._record = store.redis.register_script(scripts.WEBHOOK_ATTEMPT)
        self._take = store.redis.register_script(scripts.WEBHOOK_TAKE)
        self._adopt_at = 0.0  # monotonic time of the next look for events held without a due time

    @property
    def lease_ms(self) -> int:
        """How long an event being attempted is held: then another dispatcher may take it (a dead one's)."""
        return int((self.settings.webhook_timeout_seconds * 2 + self.settings.webhook_retry_seconds) * 1000)

    def _ensure_group(self) -> None:
        try:
            self.store.redis.xgroup_create(self.store.keys.webhook_outbox, WEBHOOK_GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def step(self) -> float:
        """One pass of :meth:`pass_once`, waiting up to 0.5 s for an event when none was due."""
        self._ensure_group()
        self.pass_once(block_ms=500)
        return 0.0

    def pass_once(self, block_ms: int = 0) -> int:
        """Take the events due now (new ones, retries whose backoff is over, a dead dispatcher's once its
        lease is over: one shared schedule in Redis, see ``webhook_take.lua``) and try each; returns tries.
        With ``block_ms``, when none was due, wait up to that long for a new event or the next due time."""
        k = self.store.keys
        adopt = time.monotonic() >= self._adopt_at
        if adopt:  # events a dispatcher of an older version read and died with: rarely looked for
            self._adopt_at = time.monotonic() + self.lease_ms / 2000
        reply = self._take(keys=[k.webhook_outbox, k.webhook_due, k.webhook_attempts],
                           args=[WEBHOOK_GROUP, self.consumer, self.lease_ms, self._batch, "1" if adopt else "0"])
        next_due_ms, last_id, entries = int(reply[0]), _text(reply[1]), reply[2:]
        for entry_id, flat in entries:
            self._try(_text(entry_id), {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)})
        if not entries and block_ms:
            wait = block_ms if next_due_ms < 0 else max(1, min(block_ms, next_due_ms))
            r: Any = self.store.redis  # a new entry after the last one wakes this at once
            r.xread({k.webhook_outbox: last_id}, count=1, block=wait)
        return len(entries)

    def _try(self, eid: str, f: dict[str, str]) -> None:
        s = self.settings
        now_ms = self.store.redis_now_ms()
        at_ms = int(f.get("at") or now_ms)
        job_key = self.store.keys.job(f.get("job", ""))
        if now_ms - at_ms > s.webhook_deadline_seconds * 1000:
            self._note(eid, job_key, f, now_ms, None, "deadline passed: given up", "expired")
            return
        when = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        body = dumps({
            "type": f"job.{f.get('status')}",
            "timestamp": datetime.fromtimestamp(at_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z"),
            "data": {"id": f.get("job"), "status": f.get("status"), "task": f.get("task"),
                     "tenant": f.get("tenant"), "links": {"self": f"/jobs/{f.get('job')}"}},
        }).decode()
        code: int | None = None
        try:
            target = check_url(f.get("url", ""), allow_http=s.webhook_allow_http)
            ip = resolve(target, allow_private=s.webhook_allow_private)
        except UnsafeWebhookUrl as e:
            self._note(eid, job_key, f, now_ms, None, f"refused: {e}", "refused")  # not retried: not allowed
            return
        headers = {
            "content-type": "application/json",
            "user-agent": "jobs-api-webhooks",
            "webhook-id": f.get("event", ""),
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": sign(self.secrets.signing(f.get("tenant", ""), now_ms), f.get("event", ""),
                                      when, body),
        }
        error: str | None = None
        try:
            code = post(target, ip, body.encode(), headers, s.webhook_timeout_seconds)
        except (OSError, http.client.HTTPException) as e:
            error = f"{type(e).__name__}: {e}"[:200]
        ok = code is not None and 200 <= code < 300
        self._note(eid, job_key, f, now_ms, code, error, "delivered" if ok else "failed")

    def _note(self, eid: str, job_key: str, f: dict[str, str], now_ms: int, code: int | None, error: str | None,
              outcome: str) -> None:
        """Record the attempt on the job and, in the same step, end the event or set its next attempt."""
        s, k = self.settings, self.store.keys
        attempt = {"event": f.get("event"), "status_code": code, "error": error,
                   "at": datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")}
        self._record(keys=[job_key, k.webhook_outbox, k.webhook_due, k.webhook_attempts],
                     args=[dumps(attempt), outcome, ATTEMPTS_KEPT, WEBHOOK_GROUP, eid,
                           int(s.webhook_retry_seconds * 1000), int(MAX_BACKOFF_SECONDS * 1000)])
        if self._observe is not None:
            self._observe(outcome)
        log.info("webhook %s for job %s: %s", f.get("event"), f.get("job"),
                 outcome if outcome != "failed" else error or code)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
