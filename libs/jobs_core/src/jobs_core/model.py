"""The job model: statuses, legal transitions, and the :class:`Job` record."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from jobs_core.keys import DEFAULT_PRIORITY as DEFAULT_PRIORITY
from jobs_core.keys import MAX_PRIORITY as MAX_PRIORITY
from jobs_core.keys import MIN_PRIORITY as MIN_PRIORITY
from jobs_core.serialization import loads


class JobStatus(str, Enum):
    """Where a job is in its life."""

    WAITING = "waiting"  # on dependencies (workflows): in no waiting list until its last one ends
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


#: value -> status, for decoding records without the Enum's lookup machinery
_STATUSES: dict[str, JobStatus] = {s.value: s for s in JobStatus}

TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)

#: Every legal status change. Lua scripts enforce the same table (see ``jobs_core/lua/``); the running ->
#: queued edge is a retry after an error, a hand-back at shutdown, or the reaper requeueing a lost job.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.WAITING: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}


def is_legal(current: JobStatus, target: JobStatus) -> bool:
    """Whether ``current -> target`` is a legal transition."""
    return target in TRANSITIONS[current]


def new_job_id() -> str:
    """A fresh job id (uuid4, canonical lowercase form)."""
    return _uuid4_text(os.urandom(16))


def new_job_ids(n: int) -> list[str]:
    """``n`` fresh job ids (as :func:`new_job_id`), from one read of the system's random source:
    ``str(uuid.uuid4())`` builds a ``UUID`` object and makes a system call per id (~2-5 µs each, a
    500-job batch's ids 1-2.5 ms; bench/analysis.md, profile 30)."""
    raw = os.urandom(16 * n)
    return [_uuid4_text(raw[i:i + 16]) for i in range(0, 16 * n, 16)]


def _uuid4_text(raw: bytes) -> str:
    # what str(uuid.UUID(bytes=raw, version=4)) gives: version 4, RFC 4122 variant, 8-4-4-4-12 hex digits
    h = "%032x" % (int.from_bytes(raw) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def is_job_id(value: str) -> bool:
    """Whether ``value`` is a job id in canonical form (anything else is never looked up in Redis)."""
    if len(value) != 36:
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def ms_to_datetime(ms: int | None) -> datetime | None:
    """Milliseconds since the epoch (Redis clock) to an aware UTC datetime."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class JobError:
    """Why a job failed: exception type, message and traceback."""

    type: str
    message: str
    traceback: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A task as workers publish it, so producers can list and validate without importing task code.

    ``problem`` is set (by the reader, never published) when the published entry cannot be used: the
    API then answers 503 naming the task instead of failing on it.
    """

    name: str
    description: str = ""
    params_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    defaults: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    max_attempts: int | None = None
    #: the queue its jobs go to; '' = the deployment's default queue (JOBS_QUEUE), as for tasks published
    #: before queues existed (:meth:`jobs_core.store.JobStore.tasks` fills it in)
    queue: str = ""
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out: dict[str, Any] = {
            "name": self.name,
            "queue": self.queue,
            "description": self.description,
            "params_schema": dict(self.params_schema),
            "defaults": dict(self.defaults),
            "timeout": self.timeout,
            "max_attempts": self.max_attempts,
        }
        if self.problem is not None:
            out["problem"] = self.problem
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskInfo:
        """Inverse of :meth:`to_dict`; ``ValueError`` naming the field when one has the wrong type."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a task entry must be a JSON object, not {type(data).__name__}")
        name, description = data.get("name"), data.get("description") or ""
        schema, defaults = data.get("params_schema") or {"type": "object"}, data.get("defaults") or {}
        timeout, max_attempts = data.get("timeout"), data.get("max_attempts")
        queue = data.get("queue") or ""
        checks = (
            ("name", isinstance(name, str) and name != ""),
            ("description", isinstance(description, str)),
            ("params_schema", isinstance(schema, Mapping)),
            ("defaults", isinstance(defaults, Mapping)),
            ("timeout", timeout is None or (_is_number(timeout) and timeout > 0)),
            ("max_attempts", max_attempts is None or (_is_number(max_attempts) and int(max_attempts) == max_attempts
                                                      and max_attempts >= 1)),
            ("queue", isinstance(queue, str)),
        )
        for field_name, ok in checks:
            if not ok:
                raise ValueError(f"{field_name} has an invalid value: {data.get(field_name)!r:.200}")
        return cls(
            name=str(name),
            description=str(description),
            params_schema=dict(schema),
            defaults=dict(defaults),
            timeout=None if timeout is None else float(timeout),
            max_attempts=None if max_attempts is None else int(max_attempts),
            queue=str(queue),
        )

    @classmethod
    def parse(cls, name: str, raw: bytes | str) -> TaskInfo:
        """A catalogue entry as stored; one that cannot be used comes back with ``problem`` set."""
        try:
            info = cls.from_dict(loads(raw))
        except ValueError as e:  # orjson.JSONDecodeError is a ValueError too
            return cls(name=name, problem=f"its published definition is invalid: {e}")
        if info.name != name:
            return cls(name=name, problem=f"its published definition is named {info.name!r}")
        return info


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Submission:
    """One job of :meth:`jobs_core.store.JobStore.enqueue_many` (``queue`` None: the store's default)."""

    task: str
    params: Mapping[str, Any]
    queue: str | None = None
    priority: int = DEFAULT_PRIORITY
    max_attempts: int | None = None
    timeout: float | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue as operators see it (:meth:`jobs_core.store.JobStore.queue_stats`)."""

    name: str
    waiting_by_priority: dict[int, int]
    waiting: int
    delayed: int
    running: int
    paused: bool
    cap: int | None
    workers: list[str]
    oldest_waiting_age_seconds: float | None
    finished_last_minute: int
    failed_last_minute: int
    unrunnable: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (priorities as string keys)."""
        return {
            "name": self.name,
            "waiting_by_priority": {str(p): n for p, n in sorted(self.waiting_by_priority.items(), reverse=True)},
            "waiting": self.waiting,
            "delayed": self.delayed,
            "running": self.running,
            "paused": self.paused,
            "cap": self.cap,
            "workers": list(self.workers),
            "oldest_waiting_age_seconds": self.oldest_waiting_age_seconds,
            "finished_last_minute": self.finished_last_minute,
            "failed_last_minute": self.failed_last_minute,
            "unrunnable": self.unrunnable,
        }


@dataclass(frozen=True, slots=True)
class Result:
    """A job's stored result: raw bytes and their media type (JSON results are ``application/json``)."""

    data: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class Job:
    """One job record as stored in its Redis hash."""

    id: str
    task: str
    params: Mapping[str, Any]
    status: JobStatus
    attempts: int
    max_attempts: int
    timeout: float
    progress: float | None
    message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: JobError | None
    worker: str | None
    owner: str
    seq: int = 0
    run_at: datetime | None = None
    cancel_requested: bool = False
    result_type: str | None = None
    queue: str = "jobs"
    priority: int = DEFAULT_PRIORITY
    callback_url: str | None = None
    #: Webhook deliveries so far (to the callback and the tenant subscription): ``{"attempts": [{event,
    #: status_code, error, at}...], "delivered": bool}``.
    webhook: Mapping[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        """Whether the job has finished (succeeded, failed or cancelled)."""
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> Job:
        """Build a job from ``HGETALL`` output."""
        return cls.from_fields({k.decode(): v.decode() for k, v in raw.items()})

    @classmethod
    def from_fields(cls, h: Mapping[str, str]) -> Job:
        """Build a job from its record's fields as text (e.g. the record an end notification delivers).

        Written flat (one ``get`` per field, the status looked up in a dict, a time converted only when set):
        a waiter decodes the delivered record after the last wake-up of a round trip (issue 16)."""
        get = h.get
        job_id, task = h["id"], h["task"]
        error = None
        raw_error = get("error")
        if raw_error:
            e = loads(raw_error)
            error = JobError(str(e.get("type", "")), str(e.get("message", "")), e.get("traceback"))
        progress = get("progress")
        created = get("created_at")
        assert created not in (None, ""), "job hash without created_at"
        started, finished, run_at = get("started_at"), get("finished_at"), get("run_at")
        status = h["status"]
        webhook = get("webhook")
        return cls(
            id=job_id,
            task=task,
            params=loads(get("params") or "{}"),
            status=_STATUSES.get(status) or JobStatus(status),
            attempts=int(get("attempts") or 0),
            max_attempts=int(get("max_attempts") or 1),
            timeout=float(get("timeout") or 0),
            progress=float(progress) if progress not in (None, "") else None,
            message=get("message") or None,
            created_at=datetime.fromtimestamp(int(created) / 1000, tz=UTC),
            started_at=datetime.fromtimestamp(int(started) / 1000, tz=UTC) if started else None,
            finished_at=datetime.fromtimestamp(int(finished) / 1000, tz=UTC) if finished else None,
            error=error,
            worker=get("worker") or None,
            owner=get("owner") or "default",
            seq=int(get("seq") or 0),
            run_at=datetime.fromtimestamp(int(run_at) / 1000, tz=UTC) if run_at else None,
            cancel_requested=get("cancel_requested") == "1",
            result_type=get("result_type") or None,
            queue=get("queue") or "jobs",
            priority=int(get("priority") or DEFAULT_PRIORITY),
            callback_url=get("callback") or None,
            webhook=loads(webhook) if webhook else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The public representation (times as RFC 3339 UTC strings); the API adds ``links``."""
        ts = _rfc3339
        body = {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "priority": self.priority,
            "params": self.params,
            "status": self.status.value,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
            "progress": self.progress,
            "message": self.message,
            "created_at": ts(self.created_at),
            "started_at": ts(self.started_at),
            "finished_at": ts(self.finished_at),
            "error": self.error.to_dict() if self.error else None,
            "worker": self.worker,
            "cancel_requested": self.cancel_requested,
        }
        hook = self.webhook or {}
        if self.callback_url or hook:  # a job without a callback shows its tenant subscription's attempts
            attempts = [{**a, "destination": webhook_destination(str(a.get("event") or ""))}
                        for a in hook.get("attempts") or []]
            delivered_to = sorted({a["destination"] for a in attempts
                                   if isinstance(a.get("status_code"), int) and 200 <= a["status_code"] < 300})
            tried = {a["destination"] for a in attempts}
            body["webhook"] = {"callback_url": self.callback_url, "attempts": attempts,
                               "delivered": bool(hook.get("delivered")) and tried <= set(delivered_to),
                               "delivered_to": delivered_to}
        return body


#: The last time :func:`_rfc3339` wrote, and its text: the jobs of a batch share one ``created_at`` object.
_last_time: tuple[datetime | None, str] = (None, "")


def _rfc3339(d: datetime | None) -> str | None:
    global _last_time
    if d is None:
        return None
    last = _last_time  # one tuple, read and replaced whole: safe across threads
    if last[0] is d:
        return last[1]
    text = d.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    _last_time = (d, text)
    return text


def webhook_destination(event_id: str) -> str:
    """Where a webhook event went: ``subscription`` (ids ``<job>:<n>:subscription``) or ``callback``."""
    return "subscription" if event_id.endswith(":subscription") else "callback"
