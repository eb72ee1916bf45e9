"""Queues as operators see them, and the live task catalogue: the admin side of
:class:`jobs_core.store.JobStore` (pause, resume, caps, statistics, which tasks a live worker offers, task
retirement). Kept apart from producers and delivery so each module stays small; every multi-key change is
still one Lua script (``lua/queue_control.lua``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import redis
from redis.commands.core import Script

from jobs_core.audit import SYSTEM, Actor
from jobs_core.browse import history_totals
from jobs_core.config import Settings, is_queue_name
from jobs_core.keys import PRIORITIES_HIGH_FIRST, Keys
from jobs_core.model import QueueStats, TaskInfo
from jobs_core.serialization import dumps, loads

log = logging.getLogger("jobs.queues")


@dataclass(frozen=True, slots=True)
class TaskStatus:
    """A published task and the live workers that offer it (``GET /tasks``)."""

    info: TaskInfo
    workers: int = 0
    #: queues live workers offer the task on, when more than one: a conflict (submissions go to
    #: ``info.queue``, the queue of the last worker that published the task)
    queue_conflict: list[str] = field(default_factory=list)

    @property
    def live(self) -> bool:
        """Whether some live worker offers the task (else its jobs wait, unrunnable, until one does)."""
        return self.workers > 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: the task's description plus ``workers``, ``live`` and ``queue_conflict``."""
        return {**self.info.to_dict(), "workers": self.workers, "live": self.live,
                "queue_conflict": list(self.queue_conflict)}


class QueueAdmin:
    """Queue controls, statistics and the live catalogue; mixed into :class:`jobs_core.store.JobStore`."""

    redis: redis.Redis
    settings: Settings
    keys: Keys
    _queue_control: Script

    def tasks(self) -> dict[str, TaskInfo]:
        """Every task that workers have published, by name (each with its queue filled in)."""
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.tasks))
        # an entry that cannot be used stays listed, with its problem, rather than breaking the catalogue
        infos = (TaskInfo.parse(k.decode(errors="replace"), v) for k, v in raw.items())
        infos = (i if i.queue else replace(i, queue=self.settings.queue) for i in infos)
        return {info.name: info for info in sorted(infos, key=lambda i: i.name)}

    # ------------------------------------------------------------------ workers and the catalogue
    def live_workers(self) -> list[dict[str, Any]]:
        """The status every live worker last published (its id, queues, tasks ...), by id.

        A worker whose status key expired (killed, or lost) is dropped from the workers set here.
        """
        ids = [w.decode() for w in cast(list[bytes], self.redis.zrange(self.keys.workers, 0, -1))]
        if not ids:
            return []
        raw = cast(list[bytes | None], self.redis.mget([self.keys.worker(w) for w in ids]))
        dead = [w for w, r in zip(ids, raw, strict=True) if r is None]
        if dead:
            self.redis.zrem(self.keys.workers, *dead)
        return [loads(r) for r in raw if r is not None]

    def task_statuses(self) -> dict[str, TaskStatus]:
        """Every published task with the number of live workers offering it and any queue conflict."""
        offered: dict[str, dict[str, int]] = {}
        for status in self.live_workers():
            for name, queue in (status.get("tasks") or {}).items():
                per_queue = offered.setdefault(name, {})
                per_queue[queue] = per_queue.get(queue, 0) + 1
        out = {}
        for name, info in self.tasks().items():
            per_queue = offered.get(name, {})
            conflict = sorted(per_queue) if len(per_queue) > 1 else []
            out[name] = TaskStatus(info, sum(per_queue.values()), conflict)
        return out

    def publish_tasks(self, infos: Iterable[TaskInfo]) -> list[str]:
        """Make tasks known to producers (called by every worker at start); return conflicts found.

        A task that a live worker offers on another queue is a conflict: it is logged and shown by
        ``GET /tasks`` (``queue_conflict``); submissions go to the queue of the last publisher, never to
        both.
        """
        infos = [i if i.queue else replace(i, queue=self.settings.queue) for i in infos]
        if not infos:
            return []
        live = self.task_statuses()
        known = self.tasks()
        conflicts = []
        for info in infos:
            other = known.get(info.name)
            if other is not None and other.queue != info.queue and live.get(info.name, TaskStatus(other)).live:
                conflicts.append(f"task {info.name!r} is offered on queue {info.queue!r} here and on "
                                 f"{other.queue!r} by a live worker; submissions go to {info.queue!r}")
        for message in conflicts:
            log.warning("task queue conflict: %s", message)
        now_ms = int(time.time() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.tasks, mapping={i.name: dumps(i.to_dict()) for i in infos})
        pipe.hset(self.keys.tasks_seen, mapping={i.name: now_ms for i in infos})
        pipe.sadd(self.keys.queues, *{i.queue for i in infos})
        pipe.execute()
        return conflicts

    def retire_task(self, name: str) -> bool:
        """Drop a task from the catalogue now (submissions of it get 422 until a worker publishes it again);
        True when it was there. Its queued jobs stay queued."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hdel(self.keys.tasks, name)
        pipe.hdel(self.keys.tasks_seen, name)
        return bool(pipe.execute()[0])

    def retire_stale_tasks(self) -> list[str]:
        """Drop tasks no live worker has offered for ``JOBS_TASK_RETENTION_SECONDS``; return their names."""
        now_ms = int(time.time() * 1000)
        retention_ms = self.settings.task_retention_seconds * 1000
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.tasks_seen))
        seen = {k.decode(): int(v) for k, v in raw.items()}
        retired = []
        for name, status in self.task_statuses().items():
            if status.live or name not in seen:
                self.redis.hset(self.keys.tasks_seen, name, now_ms)
            elif now_ms - seen[name] > retention_ms:
                self.retire_task(name)
                retired.append(name)
        if retired:
            log.info("retired tasks no live worker offered for %ss: %s", self.settings.task_retention_seconds,
                     ", ".join(retired))
        return retired

    # ------------------------------------------------------------------ queues
    def queue_names(self) -> list[str]:
        """Queues known from the catalogue, live workers, controls and the configuration, sorted."""
        names = {m.decode() for m in cast(set[bytes], self.redis.smembers(self.keys.queues))}
        names.update(info.queue for info in self.tasks().values())
        for status in self.live_workers():
            names.update(status.get("queues") or ())
        names.add(self.settings.queue)
        return sorted(n for n in names if is_queue_name(n))

    def _control(self, name: str, action: str, cap: str, actor: Actor | None) -> bool:
        if not is_queue_name(name):
            raise ValueError(f"not a queue name: {name!r}")
        k = self.keys.for_queue(name)
        who = (actor or SYSTEM).args()
        return bool(self._queue_control(keys=[self.keys.queues, self.keys.event_stream, self.keys.audit,
                                              *k.block], args=[action, cap, *who, *k.block_args]))

    def pause_queue(self, name: str, actor: Actor | None = None) -> bool:
        """Pause a queue: it accepts submissions, no worker starts its jobs, KEDA sees no waiting work.
        False when it was already paused. The change goes to the event stream and the audit log (by
        ``actor``), in the same script."""
        return self._control(name, "pause", "", actor)

    def resume_queue(self, name: str, actor: Actor | None = None) -> bool:
        """Resume a paused queue (its jobs keep their order); False when it was not paused."""
        return self._control(name, "resume", "", actor)

    def set_queue_cap(self, name: str, cap: int | None, actor: Actor | None = None) -> None:
        """At most ``cap`` jobs of the queue running at once, cluster-wide (None: no cap)."""
        if cap is not None and cap < 0:
            raise ValueError("cap must be >= 0")
        self._control(name, "cap", "" if cap is None else str(int(cap)), actor)

    def queue_counts(self, names: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
        """Per queue: jobs ``queued`` (waiting lists), ``paused``, ``running``, ``delayed`` and ``unrunnable``
        (parked: met by a worker lacking their task), in two round trips."""
        queues = [self.keys.for_queue(n) for n in (names if names is not None else self.queue_names())]
        pipe = self.redis.pipeline(transaction=False)
        for k in queues:
            for key in (*k.waiting_lists, *k.paused_lists):
                pipe.llen(key)
            pipe.zcard(k.leases)  # the record of running jobs (one lease each; KEDA counts it too)
            pipe.zcard(k.delayed)
            pipe.smembers(k.parked)
        raw = pipe.execute()
        out: dict[str, dict[str, int]] = {}
        parked_tasks: list[tuple[str, list[str]]] = []
        for i, k in enumerate(queues):
            row = raw[i * 23 : (i + 1) * 23]
            out[k.queue_name] = {"queued": sum(row[:10]), "paused": sum(row[10:20]), "running": row[20],
                                 "delayed": row[21], "unrunnable": 0}
            parked_tasks.append((k.queue_name, [t.decode() for t in row[22]]))
        pipe = self.redis.pipeline(transaction=False)
        for name, tasks in parked_tasks:
            for t in tasks:
                pipe.llen(self.keys.for_queue(name).parked_list(t))
        lengths = iter(pipe.execute())
        for name, tasks in parked_tasks:
            out[name]["unrunnable"] = sum(next(lengths) for _ in tasks)
        return out

    def metrics_snapshot(self) -> tuple[dict[str, dict[str, int]], dict[str, int], int]:
        """For a metrics scrape: :meth:`queue_counts` of every known queue, live workers per queue, and the
        number of jobs in the failed index."""
        statuses = self.live_workers()
        workers: dict[str, int] = {}
        for s in statuses:
            for q in s.get("queues") or ():
                workers[q] = workers.get(q, 0) + 1
        names = set(self.queue_names()) | set(workers)
        return self.queue_counts(sorted(names)), workers, int(self.redis.zcard(self.keys.failed))

    def oldest_waiting_ages(self, names: Iterable[str]) -> dict[str, float]:
        """Per queue with jobs in its waiting lists (paused ones not counted): seconds since the oldest
        head of those lists was submitted, by the Redis clock (two round trips for every queue)."""
        queues = [self.keys.for_queue(n) for n in names]
        pipe = self.redis.pipeline(transaction=False)
        for k in queues:
            for key in k.waiting_lists:
                pipe.lindex(key, 0)
        pipe.time()
        *heads, (sec, usec) = pipe.execute()
        now_ms = sec * 1000 + usec // 1000
        owners: list[tuple[str, str]] = []
        for i, k in enumerate(queues):
            for raw in heads[i * 10 : (i + 1) * 10]:
                if raw is not None:
                    job_id = loads(raw)
                    if isinstance(job_id, str):
                        owners.append((k.queue_name, job_id))
        if not owners:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for _, job_id in owners:
            pipe.hget(self.keys.job(job_id), "created_at")
        ages: dict[str, float] = {}
        for (queue, _), created in zip(owners, pipe.execute(), strict=True):
            if created is not None:
                ages[queue] = max(ages.get(queue, 0.0), max(0.0, (now_ms - int(created)) / 1000))
        return ages

    def counts(self) -> dict[str, int]:
        """Jobs queued, running, delayed, paused, unrunnable over every queue, and in the failed index."""
        total = {"queued": 0, "running": 0, "delayed": 0, "paused": 0, "unrunnable": 0}
        for per_queue in self.queue_counts().values():
            for state, n in per_queue.items():
                total[state] += n
        total["failed"] = int(self.redis.zcard(self.keys.failed))
        return total

    def queue_stats(self, name: str) -> QueueStats:
        """One queue: waiting by priority, delayed, running, paused, cap, live workers consuming it, the
        age of the oldest waiting job, and jobs finished and failed in the last minute."""
        if not is_queue_name(name):
            raise ValueError(f"not a queue name: {name!r}")
        k = self.keys.for_queue(name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(k.control, "paused", "cap")
        for p in PRIORITIES_HIGH_FIRST:
            pipe.llen(k.waiting(p))
            pipe.llen(k.paused(p))
            pipe.lindex(k.waiting(p), 0)
            pipe.lindex(k.paused(p), 0)
        pipe.zcard(k.leases)
        pipe.zcard(k.delayed)
        pipe.time()
        raw = pipe.execute()
        (paused_flag, cap_raw), rows = raw[0], raw[1:41]
        running, delayed, (sec, usec) = raw[41], raw[42], raw[43]
        now_ms = sec * 1000 + usec // 1000
        by_priority = {p: rows[i * 4] + rows[i * 4 + 1] for i, p in enumerate(PRIORITIES_HIGH_FIRST)}
        heads = [loads(h) for i in range(10) for h in rows[i * 4 + 2 : i * 4 + 4] if h is not None]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in heads:
            pipe.hget(self.keys.job(str(job_id)), "created_at")
        minute = now_ms // 60000
        pipe.hgetall(k.history(minute))
        pipe.hgetall(k.history(minute - 1))
        *created, current_raw, previous_raw = pipe.execute()
        current, previous = (history_totals({f.decode(): int(v) for f, v in raw.items()})
                             for raw in (current_raw, previous_raw))
        ages = [(now_ms - int(c)) / 1000 for c in created if c is not None]
        # sliding minute: this minute's counts plus the share of the previous minute still within 60 s
        share = 1 - (now_ms % 60000) / 60000

        def last_minute(name: str) -> int:
            return current.get(name, 0) + int(previous.get(name, 0) * share + 0.5)

        workers = sorted(s["id"] for s in self.live_workers() if name in (s.get("queues") or ()))
        unrunnable = self.queue_counts([name])[name]["unrunnable"]
        return QueueStats(
            name=name, waiting_by_priority=by_priority, waiting=sum(by_priority.values()), delayed=delayed,
            running=running, paused=paused_flag == b"1", cap=int(cap_raw) if cap_raw is not None else None,
            workers=workers, oldest_waiting_age_seconds=max(ages) if ages else None,
            finished_last_minute=last_minute("finished"), failed_last_minute=last_minute("failed"),
            unrunnable=unrunnable,
        )
