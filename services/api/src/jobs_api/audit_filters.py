"""The filters of the audit log, read from the query string once for both readers: ``GET /audit`` (JSON)
and the console's audit page (``/ui/audit``). One parser, so the page can never accept, refuse or scope a
filter differently from the API: a bad value is the same 400 naming it, and a non-admin's ``?tenant=`` is
ignored by both (they read their own tenant's entries)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import request
from jobs_core.audit import AuditQuery

from jobs_api.problems import validation_problem
from jobs_api.state import state
from jobs_api.validation import query_int

OUTCOMES = ("ok", "denied", "failed", "started", "limited")
VIAS = ("api", "console")
#: Query parameters that filter (links to an older page keep them, with ``limit``); ``before`` pages.
FILTER_PARAMS = ("tenant", "action", "target", "outcome", "via", "since", "until")
_ACTION = re.compile(r"^[a-z]+(\.[a-z]+)*\.?$")
_CURSOR = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
_U64_MAX = 2**64 - 1  # stream id parts are unsigned 64-bit: a larger one is a Redis error, not a 400
_TENANT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TARGET = re.compile(r"^[a-z]+:[A-Za-z0-9_.:\-]{1,200}$|^[a-z]+$")


@dataclass(frozen=True)
class AuditPage:
    """One page of entries as the request's filters select them."""

    entries: list[dict[str, Any]]
    #: Cursor of the older page (``?before=``), None at the end of the log.
    next: str | None
    #: The filters (and ``limit``) the request gave and the caller may use: what a next-page link repeats.
    filters: dict[str, str] = field(default_factory=dict)


def _arg(name: str, pattern: re.Pattern[str], message: str) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > 240 or not pattern.match(raw):
        raise validation_problem([{"path": f"/query/{name}", "message": message}], status=400)
    return raw


def _time_ms(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00")) if len(raw) <= 40 else None
    except ValueError:
        at = None
    if at is None or at.tzinfo is None or not 2000 <= at.year <= 9999:
        raise validation_problem([{"path": f"/query/{name}", "message": "an RFC 3339 time with a zone, e.g. "
                                   "2026-01-01T00:00:00Z"}], status=400)
    return int(at.timestamp() * 1000)


def _choice(name: str, allowed: tuple[str, ...], message: str) -> str | None:
    raw = request.args.get(name) or None
    if raw is not None and raw not in allowed:
        raise validation_problem([{"path": f"/query/{name}", "message": message}], status=400)
    return raw


def stream_cursor(name: str = "before") -> str | None:
    """A Redis stream id given back as a page cursor (``?before=``), checked: a 400 naming it, never a
    Redis error. Also the cursor of the console's webhook deliveries list."""
    before = _arg(name, _CURSOR, "the `next` cursor of a previous page")
    if before is not None and any(int(part) > _U64_MAX for part in before.split("-")):
        raise validation_problem([{"path": f"/query/{name}", "message": "the `next` cursor of a previous page"}],
                                 status=400)
    return before


def tenant_arg() -> str | None:
    """``?tenant=``, checked (a tenant name); whether the caller may use it is for the caller to decide."""
    return _arg("tenant", _TENANT, "a tenant name")


def query_from_request(tenant: str | None) -> AuditQuery:
    """The filters in the query string, checked (a bad value is a 400 naming it); ``tenant``: the one the
    caller may see, None for every tenant (see :func:`visible_tenant`)."""
    return AuditQuery(
        before=stream_cursor(),
        limit=query_int("limit", 100, 1, 500),
        tenant=tenant,
        action=_arg("action", _ACTION, "an action such as job.cancel, or a prefix ending in '.' (queue.)"),
        outcome=_choice("outcome", OUTCOMES, f"one of {', '.join(OUTCOMES)}"),
        via=_choice("via", VIAS, "api or console"),
        target=_arg("target", _TARGET, "a target such as job:<id> or queue:<name>"),
        since_ms=_time_ms("since"),
        until_ms=_time_ms("until"),
    )


def visible_tenant(is_admin: bool, own: str) -> str | None:
    """Whose entries the caller reads: an admin's ``?tenant=`` choice (None = all), else their own."""
    if not is_admin:
        return own
    return tenant_arg()


def read_audit(is_admin: bool, own_tenant: str) -> AuditPage:
    """The page of the audit log this request asks for, as the caller (``is_admin``, ``own_tenant``) may
    see it: what ``GET /audit`` answers and the console's audit page shows."""
    query = query_from_request(visible_tenant(is_admin, own_tenant))
    entries, cursor = state().store.audit_entries(query)
    given = {k: request.args[k] for k in (*FILTER_PARAMS, "limit")
             if request.args.get(k) and (k != "tenant" or is_admin)}
    return AuditPage(entries, cursor, given)
