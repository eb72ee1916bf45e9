"""Browse: the web console's side of :class:`jobs_core.store.JobStore` (search, workers, audit, bulk plans).

Kept apart from the producer and worker sides so each module stays small; it is one store over one Redis
client. Searching is a bounded scan of an index (:data:`jobs_core.scripts.BROWSE`), never of every job.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import redis
from redis.commands.core import Script

from jobs_core import event_stream, histogram
from jobs_core.config import Settings
from jobs_core.event_stream import EventBatch
from jobs_core.keys import AUDIT_STREAM_MAXLEN, Keys
from jobs_core.model import Job, JobStatus
from jobs_core.serialization import loads

#: Index entries one search request examines at most (the page may come back short, with a cursor).
SCAN_BUDGET = 5000
#: Audit entries kept (about; oldest dropped first): the stream's cap, passed to the bulk scripts.
AUDIT_KEEP = AUDIT_STREAM_MAXLEN


def history_totals(raw: Mapping[str, int]) -> dict[str, int]:
    """One minute's history counters as readers use them: ``finished``, ``failed``, ``finished:<task>``,
    ``failed:<task>`` (finished counts every terminal status) and the run-time histogram
    ``rt:<task>:<bucket>`` (:mod:`jobs_core.histogram`), from what the finish scripts store: one field
    ``j:<status>:<bucket>:<task>`` per status, run-time bucket (``-``: none) and task, one ``HINCRBY`` per
    finish (``lua/includes/queues.lua``). Fields of the earlier layout (the names above, written by
    workers of before issue 16 during a rolling upgrade) are added in as they are."""
    out: dict[str, int] = {}

    def add(name: str, n: int) -> None:
        out[name] = out.get(name, 0) + n

    for name, n in raw.items():
        status, bucket, task = name[2:].split(":", 2) if name.startswith("j:") and name.count(":") >= 3 \
            else ("", "", "")
        if not task:
            add(name, n)
            continue
        add("finished", n)
        add(f"finished:{task}", n)
        if status == "failed":
            add("failed", n)
            add(f"failed:{task}", n)
        if bucket.isdigit():
            add(f"rt:{task}:{bucket}", n)
    return out


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What the console's job search matches; every field is optional (empty = any)."""

    owner: str | None = None
    status: JobStatus | None = None
    task: str | None = None
    queue: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    param_path: str | None = None  # dot-separated field path inside params, e.g. "user.id"
    param_value: str | None = None  # matched exactly against the field's value written as text

    def describe(self) -> dict[str, str]:
        """The filter as the non-empty ``name -> text`` pairs (for previews and the audit log)."""
        out = {
            "tenant": self.owner or "",
            "status": self.status.value if self.status else "",
            "task": self.task or "",
            "queue": self.queue or "",
            "created_from": self.created_from.isoformat() if self.created_from else "",
            "created_to": self.created_to.isoformat() if self.created_to else "",
            "param": f"{self.param_path}={self.param_value}" if self.param_path else "",
        }
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of a search: the jobs, the cursor of the next page, how many index entries were examined."""

    jobs: list[Job]
    next_cursor: str | None
    scanned: int


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker as its heartbeat describes it; ``status`` is None once its status key has expired."""

    id: str
    last_seen_ms: int
    status: Mapping[str, Any] | None = field(default=None)


def _ms(d: datetime | None) -> str:
    return str(int(d.timestamp() * 1000)) if d is not None else ""


def check_cursor(cursor: str | None) -> str:
    """``+inf`` for the first page, else the cursor; ValueError when it is not one this store gave out."""
    if cursor is None:
        return "+inf"
    # ASCII digits only: str.isdigit() also accepts "²", which Redis refuses as a score
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19:
        raise ValueError("malformed cursor")
    return cursor


class Browse:
    """Console reads and bookkeeping; mixed into :class:`jobs_core.store.JobStore`, which sets these up."""

    redis: redis.Redis
    settings: Settings
    keys: Keys
    _browse: Script

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:  # implemented by JobStore
        raise NotImplementedError

    def search_jobs(self, flt: JobFilter, *, limit: int = 50, cursor: str | None = None,
                    budget: int = SCAN_BUDGET) -> SearchPage:
        """A page of jobs matching ``flt``, newest first, examining at most ``budget`` index entries.

        Raises ValueError for a malformed cursor.
        """
        next_cursor, scanned, ids = self._scan(flt, check_cursor(cursor), limit, budget)
        jobs = self.get_many(ids)
        if flt.status is not None:  # a job may have moved on between the scan and the read
            jobs = [j for j in jobs if j.status is flt.status]
        return SearchPage(jobs, next_cursor, scanned)

    def _scan(self, flt: JobFilter, bound: str, limit: int, budget: int) -> tuple[str | None, int, list[str]]:
        """One BROWSE call: (next cursor, entries examined, matching ids)."""
        index = self.keys.index if flt.owner is None else self.keys.owner_index(flt.owner)
        reply = self._browse(
            keys=[index],
            args=[bound, limit, budget, self.keys.job_prefix, flt.status.value if flt.status else "",
                  flt.task or "", flt.queue or "", self.settings.queue, _ms(flt.created_from),
                  _ms(flt.created_to), flt.param_path or "", flt.param_value or ""],
        )
        return _text(reply[0]) or None, int(reply[1]), [_text(x) for x in reply[2:]]

    def matching_ids(self, flt: JobFilter, cap: int, max_scanned: int) -> tuple[list[str], bool]:
        """Ids of up to ``cap`` jobs matching ``flt`` (newest first), examining at most ``max_scanned``
        index entries; and whether that is all of them (False: more match, or the scan stopped early)."""
        ids: list[str] = []
        cursor: str | None = None
        scanned = 0
        while len(ids) <= cap and scanned < max_scanned:
            cursor, examined, found = self._scan(flt, check_cursor(cursor), cap + 1 - len(ids),
                                                 min(SCAN_BUDGET, max_scanned - scanned))
            ids += found
            scanned += examined
            if cursor is None:
                return ids[:cap], len(ids) <= cap
        return ids[:cap], False

    def attempt_log(self, job_id: str) -> list[dict[str, Any]]:
        """A job's attempts, oldest first: ``n``, ``worker``, ``start``, ``end`` (ms) and ``outcome`` (succeeded,
        failed, cancelled, retry, handback or lost; no end yet while it runs); the last 20 are kept."""
        raw = self.redis.hget(self.keys.job(job_id), "attempt_log")
        log = loads(cast(bytes, raw)) if raw else []
        return [entry for entry in log if isinstance(entry, dict)] if isinstance(log, list) else []

    def workers(self) -> list[WorkerInfo]:
        """Every worker in the workers zset with its last published status (two round trips)."""
        entries = cast(list[tuple[bytes, float]], self.redis.zrevrange(self.keys.workers, 0, 999, withscores=True))
        pipe = self.redis.pipeline(transaction=False)
        for worker_id, _ in entries:
            pipe.get(self.keys.worker(_text(worker_id)))
        statuses = pipe.execute() if entries else []
        return [
            WorkerInfo(_text(worker_id), int(score), loads(raw) if raw else None)
            for (worker_id, score), raw in zip(entries, statuses, strict=True)
        ]

    def history(self, queue: str, minutes: int) -> list[dict[str, int]]:
        """The per-minute counters (``finished``, ``failed``, ``finished:<task>``, ``failed:<task>``, the
        histogram's ``rt:<task>:<bucket>``: :func:`history_totals`) of a queue for the last ``minutes``
        minutes, oldest first (written by the finish scripts).

        Past minutes no longer change, so each process keeps those it read (the last day's) and asks Redis
        only for the minutes it has not seen yet and for the current one: an overview reads one or two
        hashes per queue, not 1,440.
        """
        now_minute = int(self.redis.time()[0]) // 60
        wanted = range(now_minute - minutes + 1, now_minute + 1)
        cache: dict[tuple[str, int], dict[str, int]] = self.__dict__.setdefault("_history_cache", {})
        # the current minute is read every time and never kept: a minute cached while it was still being
        # written to would stay short for good
        missing = [m for m in wanted if (queue, m) not in cache or m == now_minute]
        read: dict[int, dict[str, int]] = {}
        if missing:
            k = self.keys.for_queue(queue)
            pipe = self.redis.pipeline(transaction=False)
            for m in missing:
                pipe.hgetall(k.history(m))
            for m, raw in zip(missing, pipe.execute(), strict=True):
                read[m] = history_totals({_text(f): int(v) for f, v in raw.items()})
                if m < now_minute:
                    cache[(queue, m)] = read[m]
            for key in [key for key in list(cache) if key[1] < now_minute - 1440]:  # keep a day
                cache.pop(key, None)
        return [read[m] if m in read else cache[(queue, m)] for m in wanted]

    def queue_run_time(self, queue: str) -> dict[str, Any]:
        """Run-time percentiles of a queue's jobs over the last hour and day (``hour``, ``day``) and of each
        task in it (``tasks``), from the history hashes' histograms (:mod:`jobs_core.histogram`)."""
        day = self.history(queue, 1440)
        tasks = sorted({f[len(histogram.PREFIX):].rpartition(":")[0] for m in day for f in m
                        if f.startswith(histogram.PREFIX)})
        return {**histogram.run_time(day), "tasks": {t: histogram.run_time(day, t) for t in tasks}}

    def task_run_time(self, task: str, queues: Sequence[str]) -> dict[str, Any]:
        """Run-time percentiles of a task's jobs over the last hour and day, in all of ``queues``."""
        days = [self.history(q, 1440) for q in queues]
        return {"hour": histogram.percentiles(histogram.buckets((m for d in days for m in d[-60:]), task)),
                "day": histogram.percentiles(histogram.buckets((m for d in days for m in d), task))}

    # ------------------------------------------------------------------ job event stream (GET /events)
    def read_events(self, after: str, block_ms: int, count: int = 200) -> EventBatch:
        """Events after event id ``after`` (``$`` = from now; ``<entry>:<k>``: the rest of that entry
        first), waiting up to ``block_ms`` for the first; each with its event id (:mod:`jobs_core.event_stream`),
        and the id of the last stream entry read, to read on from (``after`` when none)."""
        entry, seen = event_stream.split_id(after)
        out: list[tuple[str, dict[str, str]]] = []
        if seen:  # resumed inside an entry of several events: the rest of it, then read on after it
            for eid, fields in cast(list[tuple[bytes, dict[bytes, bytes]]],
                                    self.redis.xrange(self.keys.event_stream, entry, entry, count=1)):
                out += event_stream.expand(eid, fields)[seen:]
            if out:
                return EventBatch(entry, out)
        reply = self.redis.xread({self.keys.event_stream: entry}, count=count, block=block_ms)
        for _stream, entries in cast(list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]], reply or []):
            for eid, fields in entries:
                entry = _text(eid)
                out += event_stream.expand(eid, fields)
        return EventBatch(entry, out)

    def last_event_id(self) -> str:
        """Id of the newest event (``0-0`` when there is none): where a new stream starts."""
        newest = cast(list[tuple[bytes, Any]], self.redis.xrevrange(self.keys.event_stream, count=1))
        return _text(newest[0][0]) if newest else "0-0"

    def event_kept(self, event_id: str) -> bool:
        """Whether event ``event_id`` (its stream entry) is still in the stream. Trimming drops the oldest
        first, so then every later event is there too and a resume from it misses nothing; else it may have
        a gap."""
        entry = event_stream.entry_of(event_id)
        return bool(self.redis.xrange(self.keys.event_stream, entry, entry, count=1))

    # ------------------------------------------------------------------ console session secret
    def console_secret(self) -> bytes:
        """A random secret shared by every API process through Redis (created once with SET NX)."""
        key = self.keys.ui_secret
        self.redis.set(key, secrets.token_hex(32), nx=True)
        value = self.redis.get(key)
        assert value is not None
        return cast(bytes, value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
