"""Console login sessions, roles and CSRF.

A session is a cookie signed with ``JOBS_UI_SECRET`` (else a random secret kept in Redis and shared by every
API process): HttpOnly, SameSite=Lax, Secure when the request came over TLS, expiring after
``JOBS_UI_SESSION_SECONDS``. It never holds the API key: it holds an HMAC of it, matched against the
configured keys on every request, so removing a key from ``JOBS_API_KEYS`` ends its sessions at once.
Every session, also an anonymous one (the login form), carries a CSRF token that each state-changing
request must send back (form field ``csrf_token`` or header ``X-CSRF-Token``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jobs_core.config import Role
from jobs_core.errors import ConfigError

from jobs_api.auth import ANONYMOUS_ADMIN
from jobs_api.problems import Problem
from jobs_api.state import state

COOKIE = "jobs_ui"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
CONFIG = "jobs_console"

@dataclass(frozen=True)
class ConsoleConfig:
    """Console settings from the environment."""

    secret: str | None = None  # JOBS_UI_SECRET; None: a random one kept in Redis
    session_seconds: int = 8 * 3600  # JOBS_UI_SESSION_SECONDS
    bulk_max: int = 10_000  # JOBS_UI_BULK_MAX: jobs one bulk action changes at most
    bulk_scan: int = 200_000  # JOBS_UI_BULK_SCAN: index entries a bulk preview examines at most
    bulk_rate: int = 1000  # JOBS_UI_BULK_RATE: jobs a bulk action changes per second at most

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ConsoleConfig:
        """Read and check the ``JOBS_UI_*`` settings."""
        env = os.environ if env is None else env
        secret = env.get("JOBS_UI_SECRET", "").strip() or None
        if secret is not None and len(secret) < 32:
            raise ConfigError("JOBS_UI_SECRET must be at least 32 characters (e.g. `openssl rand -hex 32`)")

        def number(name: str, default: int, minimum: int) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            if not raw.isdigit() or int(raw) < minimum:
                raise ConfigError(f"{name} must be an integer >= {minimum}, got {raw!r}")
            return int(raw)

        return cls(
            secret=secret,
            session_seconds=number("JOBS_UI_SESSION_SECONDS", cls.session_seconds, 60),
            bulk_max=number("JOBS_UI_BULK_MAX", cls.bulk_max, 1),
            bulk_scan=number("JOBS_UI_BULK_SCAN", cls.bulk_scan, 100),
            bulk_rate=number("JOBS_UI_BULK_RATE", cls.bulk_rate, 1),
        )


def config() -> ConsoleConfig:
    """The app's console settings (``create_app`` puts them in ``app.extensions``)."""
    cfg: ConsoleConfig = current_app.extensions[CONFIG]
    return cfg


@dataclass(frozen=True)
class Principal:
    """Who is using the console: the tenant and role of their API key, and a short id of the key."""

    tenant: str
    role: Role
    key_id: str

    @property
    def can_act(self) -> bool:
        """Operators and admins may cancel, retry, run and bulk-change jobs; viewers only look."""
        return self.role.allows(Role.OPERATOR)

    @property
    def is_admin(self) -> bool:
        """Admins see every tenant's jobs and manage queues."""
        return self.role is Role.ADMIN

    def owner_filter(self, requested: str | None) -> str | None:
        """The tenant whose jobs a page shows: an admin's choice (None = all), else their own."""
        return (requested or None) if self.is_admin else self.tenant

    def describe(self) -> str:
        """``tenant/role (key id)``, for the audit log."""
        return f"{self.tenant}/{self.role} (key {self.key_id})"


def key_id(key: str) -> str:
    """A short, non-reversible id of an API key for logs and the audit trail."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def principal_for_key(key: str) -> Principal | None:
    """The principal of an API key (tenant and role, as the API's authenticator decides), or None."""
    found = state().auth.principal_for(key)
    return Principal(found.tenant, found.role, key_id(key)) if found is not None else None


def open_principal() -> Principal:
    """With auth off the console is open: everyone is an admin of the single tenant ``default``."""
    return Principal(ANONYMOUS_ADMIN.tenant, ANONYMOUS_ADMIN.role, "none")


# ---------------------------------------------------------------------------------------------- cookie
@functools.cache
def _redis_secret(store_id: int) -> str:
    del store_id  # cache key only: one secret per store
    return state().store.console_secret().decode()


def _serializer() -> URLSafeTimedSerializer:
    secret = config().secret or _redis_secret(id(state().store))
    return URLSafeTimedSerializer(secret, salt="jobs-ui-session")


def _key_ref(key: str) -> str:
    secret = (config().secret or _redis_secret(id(state().store))).encode()
    return hmac.new(secret, key.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _key_for_ref(ref: str) -> str | None:
    found = None
    for key in state().settings.api_keys:
        if hmac.compare_digest(_key_ref(key), ref):  # every key compared: no early exit
            found = key
    return found


def load_session() -> None:
    """Read the session cookie into ``g.principal`` (None when not logged in) and ``g.csrf``."""
    data: dict[str, Any] = {}
    raw = request.cookies.get(COOKIE)
    if raw:
        try:
            loaded = _serializer().loads(raw, max_age=config().session_seconds)
            data = loaded if isinstance(loaded, dict) else {}
        except BadSignature:
            data = {}
    csrf = data.get("c")
    g.session_new = not isinstance(csrf, str) or len(csrf) < 32
    g.csrf = csrf if not g.session_new else secrets.token_urlsafe(32)
    g.session_key_ref = data.get("k") if isinstance(data.get("k"), str) else ""
    g.principal = None
    if not state().auth.enabled:
        g.principal = open_principal()
    elif g.session_key_ref:
        key = _key_for_ref(g.session_key_ref)
        g.principal = principal_for_key(key) if key is not None else None


def login(key: str) -> Principal | None:
    """Open a session for ``key`` when it is valid (a fresh CSRF token too); the principal or None."""
    principal = principal_for_key(key)
    if principal is not None:
        g.principal = principal
        g.session_key_ref = _key_ref(key)
        g.csrf = secrets.token_urlsafe(32)
        g.session_new = True
    return principal


def logout() -> None:
    """Forget the session (a new anonymous one with a fresh CSRF token is written)."""
    g.logged_out = g.principal  # who it was, for the audit entry written after the response
    g.principal = None
    g.session_key_ref = ""
    g.csrf = secrets.token_urlsafe(32)
    g.session_new = True


def save_session(resp: Any) -> None:
    """Write the cookie when the session changed (login, logout, first visit)."""
    if not g.get("session_new"):
        return
    value = _serializer().dumps({"k": g.session_key_ref, "c": g.csrf})
    secure = request.is_secure or request.headers.get("X-Forwarded-Proto", "") == "https"
    resp.set_cookie(COOKIE, value, max_age=config().session_seconds, path="/", httponly=True, secure=secure,
                    samesite="Lax")


def check_csrf() -> None:
    """Refuse (403) a state-changing request whose CSRF token is missing or not this session's."""
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    if g.get("session_new") or not hmac.compare_digest(sent.encode(), str(g.csrf).encode()):
        raise Problem(403, "Forbidden", "missing or invalid CSRF token: reload the page and try again",
                      slug="csrf-failed")


def current_principal() -> Principal:
    """The logged-in principal (the blueprint's ``before_request`` ensures there is one)."""
    principal: Principal = g.principal
    return principal
