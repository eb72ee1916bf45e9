"""``GET /events``: job and queue changes as Server-Sent Events, tenant-scoped, resumable with ``Last-Event-ID``.

The Lua scripts append every job change to one capped Redis stream (``Keys.event_stream``) in the same
step as the change itself. A stream request reads it with blocking ``XREAD`` in slices and forwards the
events its caller may see: its own tenant's, or for an admin every tenant's (``?tenant=`` narrows it).
A script call that changed several jobs wrote their events as one stream entry (:mod:`jobs_core.event_stream`):
each is sent as its own ``event: job``, in order. Each event's SSE id is its stream entry id, or
``<entry id>:<k>`` for the k-th event of an entry of several, so a client that reconnects with
``Last-Event-ID`` (EventSource does this by itself) gets exactly what it missed, also from the middle of
such an entry; when that part of the stream was already trimmed it gets a ``reset`` event first (reload
your state). Tenant filtering is per event: an entry may hold several tenants' jobs.

Queue pause / resume / cap changes (``event: queue``) come through the same stream, written by
``lua/queue_control.lua`` in the same step as the change. Queues are cluster-wide and ``GET /queues`` shows
every queue to every role, so every stream gets them; who made the change (tenant and key id) is shown to
admins only, the role and whether it came through the API or the console to everyone.

An open stream holds one gunicorn thread and one pooled Redis connection. Streams take slots from the
budget in :mod:`jobs_api.slots` (``JOBS_API_STREAMS`` per process, and never the last two threads); with
none free the answer is ``503`` + ``Retry-After`` (the console then polls). A stream ends after
``max_seconds`` (default :data:`DEFAULT_SECONDS`) or when the process stops; the client reconnects.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
from flask import Blueprint, Response, g, request
from jobs_core import event_stream
from jobs_core.config import Role
from jobs_core.store import JobStore

from jobs_api import slots
from jobs_api.auth import Principal, forbidden, required_role, requires
from jobs_api.lifecycle import SHUTTING_DOWN
from jobs_api.problems import Problem, validation_problem
from jobs_api.state import state
from jobs_api.validation import query_seconds

bp = Blueprint("events", __name__)

DEFAULT_SECONDS = 300.0
MAX_SECONDS = 3600.0
#: Longest single blocking read: how fast a stopping process or a gone client lets go of the thread.
SLICE_SECONDS = 5.0
#: A comment line this often keeps proxies from closing an idle stream, and finds clients that left (a
#: write to a closed connection fails): a gone client holds its slot at most this long after a slice.
KEEPALIVE_SECONDS = 5.0
#: What EventSource waits before reconnecting (ms).
RETRY_MS = 2000
_TENANT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


@bp.before_request
def _guard() -> None:
    """A bearer key, or else the console's session cookie; then the role the view declares."""
    from jobs_api.console import session

    if request.headers.get("Authorization") or not request.cookies.get(session.COOKIE):
        principal = state().auth.authenticate()
    else:
        session.load_session()
        found = g.principal
        if found is None:
            raise Problem(401, "Unauthorized", "send an API key or log in to the console", slug="unauthorized",
                          headers={"WWW-Authenticate": 'Bearer realm="jobs"'})
        principal = Principal(found.tenant, found.role)
    g.principal = principal
    g.tenant = principal.tenant
    needed = required_role(request.endpoint or "")
    if needed is None or not principal.role.allows(needed):
        raise forbidden("this needs the viewer role")


def _start_id(store: JobStore) -> tuple[str, bool]:
    """Where to read from, and whether the client missed events that are gone (it must reload)."""
    resume = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or ""
    if not resume:
        return store.last_event_id(), False
    if not event_stream.is_event_id(resume):
        raise validation_problem([{"path": "/headers/Last-Event-ID", "message": "not an id this stream sent"}],
                                 status=400)
    if resume == "0-0" or store.event_kept(resume):
        return resume, False
    return store.last_event_id(), True


def _queue_event(event_id: str, fields: dict[str, str], admin: bool) -> dict[str, object]:
    at_ms = int(event_id.split("-", 1)[0])
    data: dict[str, object] = {
        "queue": fields.get("queue", ""), "change": fields.get("change", ""), "paused": fields.get("paused") == "1",
        "cap": int(fields["cap"]) if fields.get("cap", "").isdigit() else None,
        "role": fields.get("role") or None, "via": fields.get("via") or None,
        "at": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat().replace("+00:00", "Z"),
    }
    if admin:  # another tenant's admin key is none of a tenant's business
        data["by"] = {"tenant": fields.get("by") or None, "key_id": fields.get("key") or None}
    return data


def _frame(event_id: str | None, kind: str, data: object) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


@bp.get("/events")
@requires(Role.VIEWER)
def events() -> Response:
    """Stream job and queue changes as Server-Sent Events (``event: job`` / ``queue``), resumable."""
    principal: Principal = g.principal
    tenant = request.args.get("tenant") or None
    if tenant is not None and not _TENANT.match(tenant):
        raise validation_problem([{"path": "/query/tenant", "message": "not a tenant name"}], status=400)
    if not principal.is_admin:
        tenant = principal.tenant  # a tenant key sees its own tenant, whatever it asks for
    seconds = query_seconds("max_seconds", MAX_SECONDS) if request.args.get("max_seconds") else DEFAULT_SECONDS
    store = state().store
    after, gap = _start_id(store)
    if not slots.streams().acquire(blocking=False):
        raise Problem(503, "Service Unavailable", "this API process serves its maximum of event streams "
                      "(JOBS_API_STREAMS); retry later or poll", slug="too-many-streams",
                      headers={"Retry-After": "5"})
    if not slots.held().acquire(blocking=False):
        slots.streams().release()
        raise Problem(503, "Service Unavailable", "every thread of this API process is busy; retry later",
                      slug="too-many-streams", headers={"Retry-After": "5"})

    released = False

    def release() -> None:  # once, when the server closes the response (also if it never started)
        nonlocal released
        if not released:
            released = True
            slots.held().release()
            slots.streams().release()

    def generate() -> Iterator[bytes]:
        try:
            last = after
            yield f"retry: {RETRY_MS}\n: stream open\n\n".encode()
            if gap:
                yield _frame(last, "reset", {"reason": "events since Last-Event-ID were trimmed; reload"})
            deadline = time.monotonic() + seconds
            quiet_since = time.monotonic()
            while not SHUTTING_DOWN.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                batch = store.read_events(last, max(1, int(min(remaining, SLICE_SECONDS) * 1000)))
                last = batch.cursor
                for event_id, fields in batch.events:
                    if fields.get("kind") == "queue":  # cluster-wide, as GET /queues: every stream
                        yield _frame(event_id, "queue", _queue_event(event_id, fields, principal.is_admin))
                        quiet_since = time.monotonic()
                    elif tenant is None or fields.get("tenant") == tenant:
                        yield _frame(event_id, "job", fields)
                        quiet_since = time.monotonic()
                if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
                    yield b": keepalive\n\n"
                    quiet_since = time.monotonic()
        finally:  # a stream read to its end; call_on_close covers one the server closes early or never starts
            release()

    resp = Response(generate(), mimetype="text/event-stream")
    resp.call_on_close(release)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Accel-Buffering"] = "no"  # nginx (ingress): pass events on at once
    return resp
