"""A limit on failed API-key authentication (console login and bearer keys), per client address and per
key prefix (the first 8 characters presented), shared by every API process and pod through Redis.

Each failure is counted in Redis (``lua/auth_failure.lua``: fixed windows of
``JOBS_AUTH_FAILURE_WINDOW_SECONDS`` from the first failure). The failure that takes a count over
``JOBS_AUTH_FAILURE_LIMIT`` is answered ``429`` + ``Retry-After`` instead of ``401``, and from then until the
window ends this process refuses every authentication attempt from that address, or with a key of that
prefix, *before* looking at the key (a right key too: that is what stops guessing). A success costs no
Redis call: the block is remembered in the process, and another process learns it at the first failure it
sees (so a guesser gets at most one more try per process per window). The client address is the TCP peer,
or with ``JOBS_TRUSTED_PROXY_HOPS`` set, the address that many proxies in front report (X-Forwarded-For).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import current_app, request

from jobs_api.problems import Problem
from jobs_api.state import state

log = logging.getLogger("jobs_api.ratelimit")
EXTENSION = "jobs_api_auth_limiter"
PREFIX_CHARS = 8
_MAX_REMEMBERED = 10_000  # blocked addresses/prefixes one process remembers (oldest dropped first)


class AuthLimiter:
    """The per-process side of the limit: what is blocked until when (monotonic), and the Redis counting."""

    def __init__(self, limit: int, window_seconds: int) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self._blocked: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def _left(self, kind: str, who: str) -> int:
        until = self._blocked.get((kind, who))
        if until is None:
            return 0
        left = until - time.monotonic()
        if left <= 0:
            with self._lock:
                self._blocked.pop((kind, who), None)
            return 0
        return int(left) + 1

    def check(self, address: str, presented: str) -> None:
        """Refuse (429) before the key is checked while the address or the key's prefix is blocked."""
        if self.limit <= 0:
            return
        left = max(self._left("ip", address), self._left("key", presented[:PREFIX_CHARS]))
        if left:
            raise too_many(left)

    def failed(self, address: str, presented: str) -> None:
        """Count a failure; raise the 429 when it takes the address or the prefix over the limit."""
        if self.limit <= 0:
            return
        try:
            n_ip, s_ip, n_key, s_key = state().store.count_auth_failure(address, presented[:PREFIX_CHARS],
                                                                          self.window_seconds)
        except Exception:  # Redis down: the 401 stands (auth does not depend on the counter)
            log.warning("failed authentication not counted", exc_info=True)
            return
        left = 0
        with self._lock:
            for kind, who, n, seconds in (("ip", address, n_ip, s_ip), ("key", presented[:PREFIX_CHARS], n_key, s_key)):
                if n > self.limit:
                    if len(self._blocked) >= _MAX_REMEMBERED:
                        self._blocked.pop(next(iter(self._blocked)))
                    self._blocked[(kind, who)] = time.monotonic() + seconds
                    left = max(left, seconds)
        if left:
            log.warning("too many failed authentications: blocked for %ss", left,
                        extra={"client": address, "by": "address" if n_ip > self.limit else "key prefix"})
            raise too_many(left)


def too_many(seconds: int) -> Problem:
    """429 problem+json with Retry-After."""
    return Problem(429, "Too Many Requests", f"too many failed API-key attempts from this address or with this "
                   f"key prefix; try again in {seconds} s", slug="too-many-failed-logins",
                   headers={"Retry-After": str(max(1, seconds))})


def limiter() -> AuthLimiter | None:
    """The app's limiter (None outside an app, e.g. an Authenticator used alone)."""
    found: AuthLimiter | None = current_app.extensions.get(EXTENSION)
    return found


def client_address() -> str:
    """The client's address as the limit sees it (ProxyFix has applied JOBS_TRUSTED_PROXY_HOPS)."""
    return address_of(request.environ)


def address_of(environ: Mapping[str, Any]) -> str:
    """:func:`client_address` of a WSGI environ (what werkzeug's ``remote_addr`` reads)."""
    return environ.get("REMOTE_ADDR") or "unknown"
