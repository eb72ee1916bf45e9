"""Bearer-key authentication and tenants.

``JOBS_API_KEYS`` / ``JOBS_API_KEYS_FILE`` map keys to tenants (``Settings.api_keys``). When any key is
configured, ``/jobs*`` and ``/tasks*`` need ``Authorization: Bearer <key>``; the tenant of the key owns
the jobs it creates. With no keys configured auth is off and every job belongs to tenant ``default``.

Keys are compared in constant time: the presented key and every configured key are hashed to SHA-256
(so lengths do not leak) and compared with :func:`hmac.compare_digest` against *all* keys, without an
early exit. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from flask import g, request

from jobs_api.problems import Problem

DEFAULT_TENANT = "default"


class Authenticator:
    """Resolves the tenant of a request from its bearer key."""

    def __init__(self, api_keys: Mapping[str, str]) -> None:
        self._digests = [(hashlib.sha256(k.encode()).digest(), t) for k, t in api_keys.items()]

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (auth on)."""
        return bool(self._digests)

    def tenant_for(self, presented: str) -> str | None:
        """The tenant owning ``presented``, or None; the time taken does not depend on which key matches."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: str | None = None
        for key_digest, tenant in self._digests:
            if hmac.compare_digest(digest, key_digest):
                found = tenant
        return found

    def authenticate(self) -> str:
        """The current request's tenant; raises a 401 :class:`Problem` when auth is on and the key is bad."""
        if not self.enabled:
            return DEFAULT_TENANT
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                401,
                "Unauthorized",
                "this endpoint needs an API key: send 'Authorization: Bearer <key>'",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="jobs"'},
            )
        tenant = self.tenant_for(token)
        if tenant is None:
            raise Problem(
                401,
                "Unauthorized",
                "the API key is not valid",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="jobs", error="invalid_token"'},
            )
        return tenant


def current_tenant() -> str:
    """The tenant of the current request (set by the blueprint's ``before_request``)."""
    tenant: str = g.tenant
    return tenant
