"""Bearer-key authentication, tenants and roles.

``JOBS_API_KEYS`` / ``JOBS_API_KEYS_FILE`` map keys to a tenant and a role (``Settings.api_keys``). When
any key is configured, every endpoint but the ops ones (health, metrics, docs) needs
``Authorization: Bearer <key>``; the tenant of the key owns the jobs it creates. With no keys configured
auth is off and every caller is the ``admin`` of tenant ``default`` (nothing is protected anyway, and the
local stack of ``make run`` can then use every endpoint).

Roles are checked on the server, per view: every view of a protected blueprint declares the least role
it needs with :func:`requires`; a view that declares none is refused to everyone (deny by default).

Keys are compared in constant time: the presented key and every configured key are hashed to SHA-256
(so lengths do not leak) and compared with :func:`hmac.compare_digest` against *all* keys, without an
early exit. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from flask import Blueprint, current_app, g, request
from jobs_core.config import ApiKey, Role

from jobs_api import ratelimit
from jobs_api.problems import Problem
from jobs_api.state import state

DEFAULT_TENANT = "default"
#: The attribute :func:`requires` sets on a view.
_ROLE_ATTR = "jobs_required_role"

F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and role of the presented key."""

    tenant: str
    role: Role

    @property
    def is_admin(self) -> bool:
        """Whether the caller may read every tenant's jobs and change queues."""
        return self.role is Role.ADMIN


#: The caller when auth is off.
ANONYMOUS_ADMIN = Principal(DEFAULT_TENANT, Role.ADMIN)


class Authenticator:
    """Resolves the principal (tenant and role) of a request from its bearer key."""

    def __init__(self, api_keys: Mapping[str, ApiKey]) -> None:
        self._digests = [
            (hashlib.sha256(k.encode()).digest(), Principal(v.tenant, v.role)) for k, v in api_keys.items()
        ]

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (auth on)."""
        return bool(self._digests)

    def principal_for(self, presented: str) -> Principal | None:
        """Who owns ``presented``, or None; the time taken does not depend on which key matches."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: Principal | None = None
        for key_digest, principal in self._digests:
            if hmac.compare_digest(digest, key_digest):
                found = principal
        return found

    def authenticate(self) -> Principal:
        """The current request's principal; raises a 401 :class:`Problem` when auth is on and the key is bad."""
        if not self.enabled:
            return ANONYMOUS_ADMIN
        return self.principal_of(request.headers.get("Authorization", ""), ratelimit.client_address)

    def principal_of(self, header: str, address: Callable[[], str]) -> Principal:
        """The principal of an ``Authorization`` header value (``address()``: the client, for the failure
        limit); a 401 :class:`Problem` (429 once over the limit) when auth is on and the key is bad.

        The one check of a bearer key: the blueprints' guard (through :meth:`authenticate`) and the WSGI
        fast path of ``POST /jobs`` (``jobs_api.fast_submit``) call it; it needs an app context.
        """
        if not self.enabled:
            return ANONYMOUS_ADMIN
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
        lim = ratelimit.limiter()  # failed keys are counted per client address and key prefix
        if lim is not None:
            lim.check(address(), token)
        principal = self.principal_for(token)
        if principal is None:
            if lim is not None:
                lim.failed(address(), token)  # 429 instead of 401 once over the limit
            raise Problem(
                401,
                "Unauthorized",
                "the API key is not valid",
                slug="unauthorized",
                headers={"WWW-Authenticate": 'Bearer realm="jobs", error="invalid_token"'},
            )
        return principal


def requires(role: Role) -> Callable[[F], F]:
    """Declare the least role a view needs (checked by the blueprint's guard, see :func:`protect`)."""

    def mark(view: F) -> F:
        setattr(view, _ROLE_ATTR, role)
        return view

    return mark


def required_role(endpoint: str) -> Role | None:
    """The role the view of ``endpoint`` declared with :func:`requires`, if any."""
    role: Role | None = getattr(current_app.view_functions.get(endpoint), _ROLE_ATTR, None)
    return role


def forbidden(detail: str) -> Problem:
    """403: the key is valid but its role may not do this."""
    return Problem(403, "Forbidden", detail, slug="forbidden")


def check_role(principal: Principal, needed: Role | None) -> None:
    """403 unless ``principal``'s role allows ``needed`` (the role a view declared; None: nobody may call it)."""
    if needed is None:  # a view without a declared role: refuse rather than guess
        raise forbidden("this endpoint declares no role, so nobody may call it")
    if not principal.role.allows(needed):
        raise forbidden(f"this needs the {needed} role; the API key has the {principal.role} role")


def protect(bp: Blueprint) -> None:
    """Authenticate every request to ``bp`` and check the role its view declared."""

    @bp.before_request
    def _guard() -> None:
        principal = state().auth.authenticate()
        g.principal = principal
        g.tenant = principal.tenant
        check_role(principal, required_role(request.endpoint or ""))


def current_principal() -> Principal:
    """The caller of the current request (set by the guard of :func:`protect`)."""
    principal: Principal = g.principal
    return principal


def job_owner() -> str | None:
    """The owner to look jobs up under: the caller's tenant, or None (any tenant) for an admin."""
    principal = current_principal()
    return None if principal.is_admin else principal.tenant


def current_tenant() -> str:
    """The tenant of the current request (set by the guard of :func:`protect`)."""
    tenant: str = g.tenant
    return tenant
