"""Schedules (cron): the :class:`Schedule` model and which ticks are due.

A schedule names a task, its params and a cron expression evaluated in an IANA time zone (parsed by
``croniter``; 5 fields, or 6 with seconds last). A *tick* is one instant the expression names, kept as
milliseconds since the epoch (UTC). Which ticks are enqueued after an outage follows the schedule's
catch-up policy:

- ``skip``: only the latest due tick, and only when it is at most the grace period old (on time);
- ``one``:  only the latest due tick within the catch-up window;
- ``all``:  every due tick within the catch-up window, oldest first.

Ticks older than the window are never enqueued. Storage and the exactly-once enqueue are in
:mod:`jobs_core.schedule_store`; this module has no Redis in it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import croniter  # type: ignore[import-untyped]

from jobs_core.errors import InvalidSchedule
from jobs_core.serialization import loads

#: Schedule names: as queue and tenant names (they become part of key names).
SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_CRON_LENGTH = 200
DEFAULT_CATCHUP_WINDOW_SECONDS = 3600
MAX_CATCHUP_WINDOW_SECONDS = 7 * 24 * 3600
#: The most ticks one evaluation enqueues; the rest follow at the next evaluation (catch-up ``all``).
MAX_TICKS_PER_PASS = 100
#: Job ids of ticks are uuid5 in this namespace, from (key prefix, tenant, schedule, tick).
TICK_NAMESPACE = uuid.UUID("5b0c8e9e-2f1d-4a53-9d0e-7c1f3a6b2e41")


class CatchUp(str, Enum):
    """Which missed ticks are enqueued after an outage."""

    SKIP = "skip"
    ONE = "one"
    ALL = "all"

    def __str__(self) -> str:
        return self.value


class Overlap(str, Enum):
    """Whether a tick is enqueued while the job of the previous tick is still queued or running."""

    ALLOW = "allow"
    SKIP = "skip"

    def __str__(self) -> str:
        return self.value


def check_cron(expression: str) -> str | None:
    """Why ``expression`` is not a usable cron expression, or None when it is."""
    if len(expression) > MAX_CRON_LENGTH:
        return f"at most {MAX_CRON_LENGTH} characters"
    fields = expression.split()
    if not expression.startswith("@") and len(fields) not in (5, 6):
        return "must have 5 fields (minute hour day month weekday) or 6 (with seconds last)"
    if not croniter.is_valid(expression):
        return "not a valid cron expression"
    return None


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError when unknown or malformed."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as e:  # OSError: a path-like name
        raise ValueError(f"unknown time zone {name!r}") from e


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a client defines (``PUT /schedules/<name>``); compared as JSON to tell a real change."""

    task: str
    cron: str
    params: Mapping[str, Any] = field(default_factory=dict)
    timezone: str = "UTC"
    priority: int | None = None
    catchup: CatchUp = CatchUp.ONE
    catchup_window: int = DEFAULT_CATCHUP_WINDOW_SECONDS
    overlap: Overlap = Overlap.ALLOW
    max_attempts: int | None = None
    timeout: float | None = None

    def validate(self) -> None:
        """Raise :class:`InvalidSchedule` naming every bad field."""
        errors: list[tuple[str, str]] = []
        why = check_cron(self.cron)
        if why:
            errors.append(("/cron", why))
        try:
            zone(self.timezone)
        except ValueError as e:
            errors.append(("/timezone", str(e)))
        if not 1 <= self.catchup_window <= MAX_CATCHUP_WINDOW_SECONDS:
            errors.append(("/catchup_window", f"must be 1..{MAX_CATCHUP_WINDOW_SECONDS} seconds"))
        if errors:
            raise InvalidSchedule(errors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored, and shown by the API)."""
        return {
            "task": self.task,
            "params": dict(self.params),
            "cron": self.cron,
            "timezone": self.timezone,
            "priority": self.priority,
            "catchup": self.catchup.value,
            "catchup_window": self.catchup_window,
            "overlap": self.overlap.value,
            "max_attempts": self.max_attempts,
            "timeout": self.timeout,
        }

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys), so an unchanged re-declaration compares equal."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScheduleSpec:
        """Inverse of :meth:`to_dict`; missing optional fields take their defaults."""
        return cls(
            task=str(data["task"]),
            cron=str(data["cron"]),
            params=dict(data.get("params") or {}),
            timezone=str(data.get("timezone") or "UTC"),
            priority=data.get("priority"),
            catchup=CatchUp(data.get("catchup") or CatchUp.ONE.value),
            catchup_window=int(_default(data.get("catchup_window"), DEFAULT_CATCHUP_WINDOW_SECONDS)),
            overlap=Overlap(data.get("overlap") or Overlap.ALLOW.value),
            max_attempts=data.get("max_attempts"),
            timeout=data.get("timeout"),
        )

    def ticks_after(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Up to ``limit`` ticks in ``(after_ms, until_ms]``, oldest first."""
        it = croniter(self.cron, _local(after_ms, self.timezone))
        out: list[int] = []
        while len(out) < limit:
            tick = _ms(it.get_next(datetime))
            if tick > until_ms:
                break
            if tick > after_ms:  # croniter may repeat an instant around a DST change
                out.append(tick)
        return out

    def next_tick(self, after_ms: int) -> int:
        """The first tick strictly after ``after_ms``."""
        it = croniter(self.cron, _local(after_ms, self.timezone))
        while True:
            tick = _ms(it.get_next(datetime))
            if tick > after_ms:
                return tick

    def next_runs(self, after_ms: int, count: int) -> list[int]:
        """The next ``count`` ticks after ``after_ms``."""
        out: list[int] = []
        last = after_ms
        for _ in range(count):
            last = self.next_tick(last)
            out.append(last)
        return out

    def plan(self, last_ms: int, now_ms: int, grace_ms: int) -> Plan:
        """Which ticks to enqueue now, given the last tick accounted for and the catch-up policy."""
        window_start = max(last_ms, now_ms - self.catchup_window * 1000)
        due = self.ticks_after(window_start, now_ms, MAX_TICKS_PER_PASS)
        if not due:
            return Plan(fire=[], cursor=last_ms, next_due=self.next_tick(now_ms))
        if len(due) == MAX_TICKS_PER_PASS:  # a backlog larger than one pass
            if self.catchup is CatchUp.ALL:  # this batch now, the rest at once after it
                return Plan(fire=due, cursor=due[-1], next_due=self.next_tick(due[-1]))
            prev = croniter(self.cron, _local(now_ms + 1, self.timezone)).get_prev(datetime)
            due = [max(due[-1], _ms(prev))]
        latest = due[-1]
        if self.catchup is CatchUp.ALL:
            fire = due
        elif self.catchup is CatchUp.ONE or now_ms - latest <= grace_ms:
            fire = [latest]
        else:
            fire = []
        return Plan(fire=fire, cursor=latest, next_due=self.next_tick(now_ms), passed=len(due) - len(fire))


@dataclass(frozen=True, slots=True)
class Plan:
    """What one evaluation of a schedule does: ticks to enqueue, the new cursor (last tick accounted
    for, fired or skipped) and when the schedule is next due."""

    fire: list[int]
    cursor: int
    next_due: int
    passed: int = 0  # due ticks within the window not enqueued (catch-up policy)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A stored schedule: its definition and its state."""

    name: str
    owner: str
    spec: ScheduleSpec
    version: int
    paused: bool
    created_at: int
    updated_at: int
    cursor: int
    last_tick: int | None
    last_job: str | None
    next_due: int | None
    fired: int = 0
    skipped: int = 0
    #: ticks skipped because the queue or the tenant was at its pending cap (counted in ``skipped`` too)
    skipped_full: int = 0
    last_skipped_full: int | None = None

    @classmethod
    def from_hash(cls, name: str, owner: str, raw: Mapping[bytes, bytes]) -> Schedule:
        """Build from ``HGETALL`` of the schedule hash."""
        h = {k.decode(): v.decode() for k, v in raw.items()}
        created = int(h["created_at"])
        return cls(
            name=name,
            owner=owner,
            spec=ScheduleSpec.from_dict(loads(h["spec"])),
            version=int(h.get("version") or 0),
            paused=h.get("paused") == "1",
            created_at=created,
            updated_at=int(h.get("updated_at") or created),
            cursor=int(h.get("cursor") or created),
            last_tick=int(h["last_fired"]) if h.get("last_fired") else None,
            last_job=h.get("last_job") or None,
            next_due=int(h["next_due"]) if h.get("next_due") else None,
            fired=int(h.get("fired") or 0),
            skipped=int(h.get("skipped") or 0),
            skipped_full=int(h.get("skipped_full") or 0),
            last_skipped_full=int(h["last_skipped_full"]) if h.get("last_skipped_full") else None,
        )

    def to_dict(self, now_ms: int, upcoming: int = 5) -> dict[str, Any]:
        """The public representation: definition, state and the next ``upcoming`` run times."""
        after = max(now_ms, self.cursor)
        return {
            "name": self.name,
            **self.spec.to_dict(),
            "paused": self.paused,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "next_runs": [] if self.paused else [iso(t) for t in self.spec.next_runs(after, upcoming)],
            "last_tick": iso(self.last_tick) if self.last_tick else None,
            "last_job": self.last_job,
            "fired": self.fired,
            "skipped": self.skipped,
            "skipped_full": self.skipped_full,
            "last_skipped_full": iso(self.last_skipped_full) if self.last_skipped_full else None,
        }


def tick_job_id(prefix: str, owner: str, name: str, tick_ms: int) -> str:
    """The job id of one tick: the same in every process that evaluates the schedule."""
    return str(uuid.uuid5(TICK_NAMESPACE, f"{prefix}\x00{owner}\x00{name}\x00{tick_ms}"))


def iso(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def _local(ms: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=zone(tz))


def _ms(d: datetime) -> int:
    return round(d.timestamp() * 1000)
