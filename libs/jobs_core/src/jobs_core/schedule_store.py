"""Schedules in Redis: define, read, pause, delete, and fire due ticks exactly once.

Mixed into :class:`jobs_core.store.JobStore` (one store, one Redis client); the model and the tick
arithmetic are in :mod:`jobs_core.schedules`, the scripts in ``lua/*_schedule.lua``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import redis
from redis.commands.core import Script

from jobs_core import scripts
from jobs_core.config import Settings
from jobs_core.errors import ScheduleLimit, ScheduleNotFound
from jobs_core.keys import Keys
from jobs_core.model import DEFAULT_PRIORITY, TaskInfo
from jobs_core.schedules import (
    SCHEDULE_NAME,
    Schedule,
    ScheduleSpec,
    tick_job_id,
)
from jobs_core.serialization import dumps


def _member(owner: str, name: str) -> str:
    """Member of the schedules-due zset (tenant and schedule names never hold '/')."""
    return f"{owner}/{name}"


class ScheduleStore:
    """Schedule operations; mixed into :class:`jobs_core.store.JobStore`, which sets these up."""

    redis: redis.Redis
    settings: Settings
    keys: Keys

    def task_info(self, name: str, max_age: float = 2.0) -> TaskInfo | None:  # provided by JobStore
        raise NotImplementedError

    def _schedule_scripts(self, acked: Callable[[str], Script]) -> None:
        """Register the schedule scripts; ``acked`` wraps those whose success a client is told of (they wait
        for JOBS_ACK_REPLICAS). FIRE is not: a tick a failover lost is fired again by the next pass."""
        self._put_schedule = acked(scripts.PUT_SCHEDULE)
        self._delete_schedule = acked(scripts.DELETE_SCHEDULE)
        self._fire_schedule = self.redis.register_script(scripts.FIRE_SCHEDULE)

    def _schedule_keys(self, owner: str, name: str) -> list[str]:
        if not SCHEDULE_NAME.match(name):
            raise ScheduleNotFound(name)
        return [self.keys.schedule(owner, name), self.keys.schedules_due, self.keys.schedule_names(owner)]

    def redis_now_ms(self) -> int:
        """The Redis server clock in ms (the clock schedules are evaluated on)."""
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def put_schedule(
        self, owner: str, name: str, spec: ScheduleSpec, *, paused: bool | None = None, max_per_tenant: int = 0
    ) -> tuple[Schedule, str]:
        """Create or replace a schedule; returns it and ``created`` | ``updated`` | ``unchanged``.

        Raises :class:`InvalidSchedule` for a bad definition, :class:`ScheduleLimit` past the cap.
        """
        spec.validate()
        paused_arg = "" if paused is None else ("1" if paused else "0")
        reply = self._put_schedule(
            keys=self._schedule_keys(owner, name),
            args=[_member(owner, name), name, spec.to_json(), paused_arg, max_per_tenant],
        )
        outcome = _text(reply[0])
        if outcome == "full":
            raise ScheduleLimit(max_per_tenant)
        return self.get_schedule(owner, name), outcome

    def set_schedule_paused(self, owner: str, name: str, paused: bool) -> Schedule:
        """Pause (no tick is enqueued) or resume (from now on: ticks while paused are not caught up)."""
        reply = self._put_schedule(
            keys=self._schedule_keys(owner, name), args=[_member(owner, name), name, "", "1" if paused else "0", 0]
        )
        if _text(reply[0]) == "missing":
            raise ScheduleNotFound(name)
        return self.get_schedule(owner, name)

    def get_schedule(self, owner: str, name: str) -> Schedule:
        """One schedule of ``owner``; :class:`ScheduleNotFound` if absent."""
        keys = self._schedule_keys(owner, name)
        raw = cast(dict[bytes, bytes], self.redis.hgetall(keys[0]))
        if not raw:
            raise ScheduleNotFound(name)
        return Schedule.from_hash(name, owner, raw)

    def list_schedules(self, owner: str) -> list[Schedule]:
        """Every schedule of ``owner``, by name."""
        names = [_text(n) for n in cast(list[bytes], self.redis.zrange(self.keys.schedule_names(owner), 0, -1))]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.schedule(owner, name))
        return [Schedule.from_hash(n, owner, raw) for n, raw in zip(names, pipe.execute(), strict=True) if raw]

    def delete_schedule(self, owner: str, name: str) -> None:
        """Delete a schedule (jobs it created stay); :class:`ScheduleNotFound` if absent."""
        if not self._delete_schedule(keys=self._schedule_keys(owner, name), args=[_member(owner, name), name]):
            raise ScheduleNotFound(name)

    def due_schedules(self, now_ms: int, limit: int = 100) -> list[tuple[str, str]]:
        """``(tenant, name)`` of schedules due at ``now_ms``, most overdue first."""
        members = cast(list[bytes], self.redis.zrangebyscore(self.keys.schedules_due, "-inf", now_ms, 0, limit))
        return [cast(tuple[str, str], tuple(_text(m).split("/", 1))) for m in members]

    def fire_schedule(self, owner: str, name: str, now_ms: int, grace_ms: int) -> list[str]:
        """Evaluate one schedule at ``now_ms``: enqueue its due ticks per its catch-up and overlap policies,
        each exactly once across every process doing the same; returns the ids of the jobs enqueued here."""
        try:
            sched = self.get_schedule(owner, name)
        except ScheduleNotFound:
            return []
        if sched.paused:
            return []
        spec = sched.spec
        plan = spec.plan(sched.cursor, now_ms, grace_ms)
        info = self.task_info(spec.task)
        params = {**(info.defaults if info else {}), **spec.params}
        s = self.settings
        attempts = spec.max_attempts or (info.max_attempts if info else None) or s.default_max_attempts
        timeout = spec.timeout or (info.timeout if info else None) or s.default_timeout_seconds
        k = self.keys
        queue = k.for_queue(info.queue if info and info.queue else s.queue)  # the task's queue
        priority = DEFAULT_PRIORITY if spec.priority is None else spec.priority
        args: list[Any] = [
            _member(owner, name), sched.version, k.job_prefix, k.tick_marker_prefix(owner, name),
            spec.catchup_window + 86400, plan.cursor, plan.next_due, plan.passed, spec.overlap.value,
            spec.task, dumps(params), attempts, float(timeout), owner, name, queue.queue_name, priority,
            s.max_pending or 0, s.max_pending_per_tenant or 0,
        ]
        for tick in plan.fire:
            args += [tick, tick_job_id(k.prefix, owner, name, tick)]
        reply = self._fire_schedule(
            keys=[k.schedule(owner, name), k.schedules_due, queue.waiting(priority), k.index, k.owner_index(owner),
                  k.pending, k.seq, queue.paused(priority), queue.control, queue.wake, *queue.block],
            args=args,
        )
        return [_text(x) for x in reply[1:]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
