"""Read-only views of the webhook events still owed: what the console shows as a tenant's (or, for an admin,
every tenant's) pending deliveries and, on a job's page, that job's next retry.

The outbox stream (:attr:`Keys.webhook_outbox`) holds exactly the events not yet delivered nor given up:
``webhook_attempt.lua`` deletes an event once it ended. Its schedule lives beside it: the due zset
(:attr:`Keys.webhook_due`, entry id -> ms of its next attempt, or of the end of the lease while a dispatcher
attempts it) and the attempts hash (:attr:`Keys.webhook_attempts`, entry id -> failed attempts so far). An
event not in the due zset yet is new: no dispatcher has read it. Nothing here writes; every read is bounded
(a page examines at most ``scan`` outbox entries, a job's lookup a few small windows of it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from jobs_core.model import webhook_destination
from jobs_core.store import JobStore

#: Outbox entries a page examines at most (then it ends with a cursor, as the audit log's pages do).
SCAN_LIMIT = 5000
#: A job's events carry the ms of its terminal transition; they are looked for this close to each one.
_WINDOW_MS = 5000
_WINDOW_COUNT = 200


@dataclass(frozen=True)
class PendingDelivery:
    """One webhook event still owed (new, or failed and waiting for its retry)."""

    entry_id: str
    event: str
    job: str
    status: str
    task: str
    tenant: str
    url: str
    destination: str
    #: ms of the terminal transition that made the event
    at_ms: int
    #: failed attempts so far (0: never tried, or its first attempt is under way)
    failed_attempts: int
    #: ms of the next attempt (while an attempt is under way: the end of its lease); None: not read yet
    next_attempt_ms: int | None

    def to_dict(self) -> dict[str, Any]:
        """A plain mapping (templates, JSON)."""
        return {"entry_id": self.entry_id, "event": self.event, "job": self.job, "status": self.status,
                "task": self.task, "tenant": self.tenant, "url": self.url, "destination": self.destination,
                "at_ms": self.at_ms, "failed_attempts": self.failed_attempts,
                "next_attempt_ms": self.next_attempt_ms}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _fields(flat: Any) -> dict[str, str]:
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = list(flat)
    return {_text(items[i]): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _annotate(store: JobStore, entries: Sequence[tuple[str, dict[str, str]]]) -> list[PendingDelivery]:
    """Join outbox entries with their schedule (next attempt, failed attempts): one round trip."""
    if not entries:
        return []
    ids = [eid for eid, _ in entries]
    pipe = store.redis.pipeline(transaction=True)  # one snapshot of the schedule
    pipe.zmscore(store.keys.webhook_due, ids)
    pipe.hmget(store.keys.webhook_attempts, ids)
    due, failed = pipe.execute()
    out = []
    for (eid, f), score, n in zip(entries, due, failed, strict=True):
        event = f.get("event", "")
        out.append(PendingDelivery(
            entry_id=eid, event=event, job=f.get("job", ""), status=f.get("status", ""), task=f.get("task", ""),
            tenant=f.get("tenant", ""), url=f.get("url", ""), destination=webhook_destination(event),
            at_ms=int(f.get("at") or eid.split("-")[0]), failed_attempts=int(n or 0),
            next_attempt_ms=int(score) if score is not None else None))
    return out


def pending_page(store: JobStore, *, tenant: str | None, before: str | None = None, limit: int = 50,
                 scan: int = SCAN_LIMIT) -> tuple[list[PendingDelivery], str | None]:
    """Events still owed, newest first: ``tenant``'s (None: every tenant's), older than the cursor
    ``before``. Examines at most ``scan`` outbox entries; returns the page and the cursor of the next
    (older) one, None when the outbox has nothing older."""
    end = f"({before}" if before else "+"
    raw = cast(list[tuple[Any, Any]], store.redis.xrevrange(store.keys.webhook_outbox, end, "-", count=scan))
    found: list[tuple[str, dict[str, str]]] = []
    cursor: str | None = None
    for i, (entry_id, flat) in enumerate(raw):
        eid, f = _text(entry_id), _fields(flat)
        if tenant is None or f.get("tenant", "") == tenant:
            found.append((eid, f))
        if len(found) == limit:
            cursor = eid if i + 1 < len(raw) or len(raw) == scan else None
            break
    else:
        cursor = _text(raw[-1][0]) if len(raw) == scan else None
    return _annotate(store, found), cursor


def pending_for_job(store: JobStore, job_id: str, transitions_ms: Iterable[int]) -> list[PendingDelivery]:
    """The job's events still owed, oldest first. Each event is written in the same step as a terminal
    transition of the job, so it is looked for within a few seconds of each transition's time
    (``transitions_ms``: its ``finished_at`` and its attempts' ends), a few hundred entries at most each.
    Not found here: an event of an earlier transition that left no attempt behind (a job cancelled while
    queued, then retried) once a later one replaced ``finished_at``; the deliveries list still shows it."""
    seen: dict[str, dict[str, str]] = {}
    pipe = store.redis.pipeline(transaction=False)
    windows = sorted({int(t) for t in transitions_ms})
    for t in windows:
        pipe.xrange(store.keys.webhook_outbox, max(0, t - _WINDOW_MS), t + _WINDOW_MS, count=_WINDOW_COUNT)
    for rows in pipe.execute() if windows else []:
        for entry_id, flat in rows:
            f = _fields(flat)
            if f.get("job") == job_id:
                seen[_text(entry_id)] = f
    return _annotate(store, sorted(seen.items(), key=lambda kv: tuple(int(p) for p in kv[0].split("-"))))
