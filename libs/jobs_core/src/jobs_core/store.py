"""The one module that talks to Redis: job records, the queue, leases, indexes and task catalogue.

Producers (the API) and the worker both use :class:`JobStore`; its worker-side operations live in
:mod:`jobs_core.delivery`. Every multi-key change is one Lua script from :mod:`jobs_core.scripts`,
registered once per store.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import redis
from redis.commands.core import Script

from jobs_core import scripts, tracing
from jobs_core.audit import AuditLog
from jobs_core.browse import Browse, JobFilter
from jobs_core.bulk_store import BulkStore
from jobs_core.config import Settings
from jobs_core.connection import acknowledged_script, connect
from jobs_core.delivery import ClaimedJob, Delivery, Finish, ReapReport, text
from jobs_core.errors import (
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    QueueFull,
    ResultExpired,
    ResultNotReady,
)
from jobs_core.flow_store import FlowStore
from jobs_core.group_commit import GroupCommit
from jobs_core.keys import Keys
from jobs_core.model import (
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Job,
    JobStatus,
    Result,
    Submission,
    TaskInfo,
    is_job_id,
    new_job_id,
    new_job_ids,
)
from jobs_core.queues import QueueAdmin, TaskStatus
from jobs_core.schedule_store import ScheduleStore
from jobs_core.serialization import dumps
from jobs_core.waiting import JSON_MEDIA_TYPE, Waiting

#: Tenants whose key names a store keeps spelled (more: it starts over; a library may pass any owner)
MAX_CACHED_OWNERS = 1024


def queue_entry(job_id: str) -> str:
    """The queue list entry for a job: its id JSON-encoded, as ``hotqueue(serializer=json)`` writes."""
    return f'"{job_id}"'


class _Part(NamedTuple):
    """One submission's share of an ``ENQUEUE`` call (:meth:`JobStore._enqueue_call`)."""

    queues: list[str]  # the queues its jobs go to; a job's queue number is 1-based into this list
    header: list[Any]  # owner, caps, idempotency flag and digest, job count, traceparent, callback, reply_to
    jobs: list[Any]  # 8 arguments per job
    owner_index: str
    idem_key: str


def request_digest(task: str, params: Mapping[str, Any], **options: Any) -> str:
    """A stable digest of a submission, to tell an idempotent repeat from a different request."""
    body = dumps({"task": task, "params": params, **options})
    return hashlib.sha256(body).hexdigest()


class JobStore(Delivery, Waiting, Browse, BulkStore, QueueAdmin, ScheduleStore, FlowStore, AuditLog):
    """Job storage and queue operations on one Redis, for one namespace.

    Submissions go to the queue they name (default: ``settings.queue``); a worker's store claims from
    ``settings.worker_queues`` in order. Queue controls and the live catalogue are in :class:`QueueAdmin`.
    """

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.keys = settings.keys
        self.queues = settings.worker_queues
        self.offers = None

        # the writes a caller is told are done wait for JOBS_ACK_REPLICAS replicas (jobs_core.connection)
        def acked(script: str) -> Script:
            return acknowledged_script(client, script, settings, self.keys.ack_fence)

        # concurrent submissions of this process share one pipelined round trip (jobs_core.group_commit)
        self._enqueue = GroupCommit(client, scripts.ENQUEUE, settings, self.keys.ack_fence, self._enqueue_call,
                                    lone=(scripts.ENQUEUE_ONE, self._enqueue_one_call))
        self._queue_control = acked(scripts.QUEUE_CONTROL)
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._progress = client.register_script(scripts.PROGRESS)
        self._waiters = client.register_script(scripts.WAITERS)
        self._finish_claim = acked(scripts.FINISH_CLAIM)
        self._cancel = acked(scripts.CANCEL)
        self._retry = acked(scripts.RETRY)
        self._reap = client.register_script(scripts.REAP)
        self._browse = client.register_script(scripts.BROWSE)
        self._schedule_scripts(acked)
        self._flow_scripts(acked)
        self._bulk_scripts()
        # one pub/sub connection per thread (and its reply channel), reused by every wait: jobs_core.waiting
        self._local = threading.local()
        self._task_cache: tuple[float, dict[str, TaskInfo]] = (float("-inf"), {})
        self._queue_blocks: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._lone_keys: dict[tuple[str, int], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        k = self.keys
        self._lone_fixed = (k.index, k.pending, k.seq, k.queues, k.job_prefix)  # ENQUEUE_ONE's fixed names
        self._owner_keys: dict[str, tuple[str, str]] = {}  # tenant -> (its index, its no-key idempotency key)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        """A store with its own pooled connection built from ``settings``."""
        return cls(connect(settings), settings)

    def ping(self) -> None:
        """Raise a ``redis`` connection error when Redis is unreachable."""
        self.redis.ping()

    # ------------------------------------------------------------------ producers
    def enqueue(
        self,
        task: str,
        params: Mapping[str, Any],
        *,
        queue: str | None = None,
        priority: int = DEFAULT_PRIORITY,
        owner: str = "default",
        max_attempts: int | None = None,
        timeout: float | None = None,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        max_pending: int | None = None,
        max_pending_per_tenant: int | None = None,
        callback_url: str | None = None,
        reply: bool = False,
    ) -> tuple[Job, bool]:
        """Store a job and queue it in one atomic step; return ``(job, created)``.

        ``queue`` defaults to ``settings.queue``; ``priority`` is 0..9, higher runs first. ``created`` is
        False when ``idempotency_key`` was already used for the same request, in which case the earlier job
        is returned (the same key with a different request, ``callback_url`` included, is a conflict).
        ``callback_url`` (checked by the caller, :func:`jobs_core.webhooks.check_url`) gets a signed webhook
        when the job ends. Raises :class:`QueueFull` or :class:`IdempotencyConflict`.

        ``reply=True`` when this thread will :meth:`wait` / :meth:`wait_result` for the job: it is stored with
        the thread's reply channel (subscribed once per thread, before the job exists), so its end arrives
        with no round trip but the submission's (see :mod:`jobs_core.waiting`). An idempotent repeat
        (``created`` False) keeps the first submission's channel and is waited for on the job's own.
        """
        item = Submission(task, params, queue, priority, max_attempts, timeout, delay)
        reply_to = self.reply_channel() if reply else None
        jobs, created = self._enqueue_items(
            [item], owner=owner, idempotency_key=idempotency_key, max_pending=max_pending,
            max_pending_per_tenant=max_pending_per_tenant,
            # optional fields join the digest only when set: keys stored before they existed still match
            digest_of=lambda: request_digest(task, params, max_attempts=max_attempts, timeout=timeout, delay=delay,
                                             **({"priority": priority} if priority != DEFAULT_PRIORITY else {}),
                                             **({"callback_url": callback_url} if callback_url else {})),
            idem_scope="",
            callback_url=callback_url,
            reply_to=reply_to,
        )
        if reply_to is not None and created:
            self.expect_reply(jobs[0].id)
        return jobs[0], created

    def enqueue_many(
        self,
        items: Sequence[Submission],
        *,
        owner: str,
        idempotency_key: str | None = None,
        max_pending: int | None = None,
        max_pending_per_tenant: int | None = None,
        callback_url: str | None = None,
    ) -> tuple[list[Job], bool]:
        """Store and queue every item, all or none, in one script; return ``(jobs, created)``.

        Caps count the whole batch (``max_pending`` per queue, ``max_pending_per_tenant`` for ``owner``):
        when it does not fit, :class:`QueueFull` and nothing is queued. With ``idempotency_key`` a repeat
        of the same batch returns the first one's jobs (``created`` False); a different batch under the
        same key (``callback_url`` included) raises :class:`IdempotencyConflict`.
        """
        if not items:
            return [], True
        return self._enqueue_items(
            items, owner=owner, idempotency_key=idempotency_key, max_pending=max_pending,
            max_pending_per_tenant=max_pending_per_tenant,
            digest_of=lambda: hashlib.sha256(dumps([
                {"task": i.task, "params": i.params, "queue": i.queue, "priority": i.priority,
                 "max_attempts": i.max_attempts, "timeout": i.timeout, "delay": i.delay} for i in items
            ] + ([{"callback_url": callback_url}] if callback_url else []))).hexdigest(),
            idem_scope="batch:",
            callback_url=callback_url,
        )

    def _enqueue_items(
        self,
        items: Sequence[Submission],
        *,
        owner: str,
        idempotency_key: str | None,
        max_pending: int | None,
        max_pending_per_tenant: int | None,
        digest_of: Callable[[], str],
        idem_scope: str,
        callback_url: str | None = None,
        reply_to: str | None = None,
    ) -> tuple[list[Job], bool]:
        s = self.settings
        queue_names = list(dict.fromkeys(i.queue or s.queue for i in items))
        position = {q: n + 1 for n, q in enumerate(queue_names)}
        digest = ""
        owner_keys = self._owner_keys.get(owner)
        if owner_keys is None:  # spelled once per tenant (a lone submission's key names are most of its Python)
            if len(self._owner_keys) >= MAX_CACHED_OWNERS:
                self._owner_keys.clear()
            owner_keys = self._owner_keys[owner] = (self.keys.owner_index(owner), self.keys.idempotency(owner, "-"))
        owner_index, idem_key = owner_keys
        if idempotency_key is not None:
            digest = digest_of()
            idem_key = self.keys.idempotency(
                owner, idem_scope + hashlib.sha256(idempotency_key.encode()).hexdigest()
            )
        # (id, max_attempts, timeout) per item; the Job objects are built once, from the reply
        made: list[tuple[str, int, float]] = []
        job_args: list[Any] = []
        for item, job_id in zip(items, new_job_ids(len(items)) if len(items) > 1 else (new_job_id(),), strict=True):
            if not MIN_PRIORITY <= item.priority <= MAX_PRIORITY:
                raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY}, got {item.priority}")
            attempts = item.max_attempts if item.max_attempts is not None else s.default_max_attempts
            job_timeout = float(item.timeout if item.timeout is not None else s.default_timeout_seconds)
            made.append((job_id, attempts, job_timeout))
            job_args += [job_id, item.task, dumps(item.params), attempts, job_timeout, int(item.delay * 1000),
                         position[item.queue or s.queue], item.priority]
        with tracing.enqueue_span(items[0].task, queue_names[0], len(items)) as span:
            traceparent = ""
            if span is not None:  # tracing on: the records carry the submission's context
                span.set_attributes(tracing.job_attributes(
                    made[0][0] if len(made) == 1 else [m[0] for m in made], items[0].task, queue_names[0]))
                if tracing.record_params():  # JOBS_TRACE_PARAMS=1 only: params may hold personal data
                    span.set_attribute("jobs.params", tracing.clip(dumps([i.params for i in items])))
                traceparent = tracing.traceparent()
            header = [owner, max_pending or 0, max_pending_per_tenant or 0,
                      "1" if idempotency_key is not None else "0", digest, len(items), traceparent,
                      callback_url or "", reply_to or ""]
            part = _Part(queue_names, header, job_args, owner_index, idem_key)
            reply = self._enqueue(part, weight=len(items), span=span)
        kind = text(reply[0])
        if kind == "full":
            scope = text(reply[1])
            raise QueueFull(scope, (max_pending if scope == "global" else max_pending_per_tenant) or 0)
        if kind == "conflict":
            raise IdempotencyConflict(idempotency_key or "", text(reply[1]))
        if kind == "exists":
            return self.get_many([text(x) for x in reply[1:]]), False
        if kind == "invalid":
            raise ValueError(text(reply[1]))
        created_ms = int(reply[1])
        created = datetime.fromtimestamp(created_ms / 1000, tz=UTC)
        return [
            Job(id=job_id, task=item.task, params=item.params, status=JobStatus.QUEUED, attempts=0,
                max_attempts=attempts, timeout=job_timeout, progress=None, message=None, created_at=created,
                started_at=None, finished_at=None, error=None, worker=None, owner=owner,
                queue=item.queue or s.queue, priority=item.priority, seq=int(seq),
                run_at=datetime.fromtimestamp((created_ms + int(item.delay * 1000)) / 1000, tz=UTC)
                if item.delay else None)
            for (job_id, attempts, job_timeout), item, seq in zip(made, items, reply[2:], strict=True)
        ], True

    def _enqueue_call(self, parts: list[_Part]) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV of one ``ENQUEUE`` call (``lua/enqueue.lua``) for the submissions ``parts``: the
        queues they use once each, then each submission's keys, header and jobs (its queue numbers
        renumbered into the call's queue list when the parts use different queues)."""
        k = self.keys
        if len(parts) == 1:
            names = parts[0].queues
            jobs = [parts[0].jobs]
        else:
            position: dict[str, int] = {}
            for p in parts:
                for q in p.queues:
                    position.setdefault(q, len(position) + 1)
            names = list(position)
            jobs = []
            for p in parts:
                numbers = [position[q] for q in p.queues]
                if numbers == list(range(1, len(numbers) + 1)):
                    jobs.append(p.jobs)
                else:
                    renumbered = list(p.jobs)
                    for i in range(6, len(renumbered), 8):
                        renumbered[i] = numbers[renumbered[i] - 1]
                    jobs.append(renumbered)
        keys: list[Any] = [k.index, k.pending, k.seq, k.queues,
                           *(key for q in names for key in self._queue_block(q)[0])]
        args: list[Any] = [k.job_prefix, len(names), len(parts), self.settings.idempotency_ttl_seconds,
                           *(a for q in names for a in self._queue_block(q)[1])]
        for p, job_args in zip(parts, jobs, strict=True):
            keys += (p.owner_index, p.idem_key)
            args += p.header
            args += job_args
        return keys, args

    def _enqueue_one_call(self, part: _Part) -> tuple[list[Any], list[Any]] | None:
        """KEYS and ARGV of an ``ENQUEUE_ONE`` call (``lua/enqueue_one.lua``) for a submission of one job sent
        alone, or None for a batch (``ENQUEUE`` takes it): only the keys that job touches."""
        if len(part.jobs) != 8:
            return None
        queue, priority = part.queues[0], part.jobs[7]
        lone = self._lone_keys.get((queue, priority))
        if lone is None:
            q = self.keys.for_queue(queue)
            mine = (q.waiting(priority), q.paused(priority))
            lone = self._lone_keys[(queue, priority)] = (
                (q.control, q.wake, q.delayed, *mine),
                tuple(x for x in (*q.waiting_lists, *q.paused_lists) if x not in mine),
            )
        index, pending, seq, queues, job_prefix = self._lone_fixed
        keys: list[Any] = [index, pending, seq, queues, part.owner_index, part.idem_key, *lone[0]]
        if part.header[1]:  # a per-queue cap: the script counts the other lists when one exists
            keys += lone[1]
        return keys, [job_prefix, self.settings.idempotency_ttl_seconds, queue, *part.header, *part.jobs]

    def _queue_block(self, queue: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The queue's KEYS and ARGV blocks (``lua/includes/queues.lua``), built once per queue: a submission
        names ~30 keys, and spelling them anew on every call was ~5% of an enqueue's CPU (cProfile)."""
        block = self._queue_blocks.get(queue)
        if block is None:
            k = self.keys.for_queue(queue)
            block = self._queue_blocks[queue] = (tuple(k.block), tuple(k.block_args))
        return block

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """The job with this id; :class:`JobNotFound` if absent, malformed, or another owner's."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        raw: dict[bytes, bytes] = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.job(job_id)))
        if not raw:
            raise JobNotFound(job_id)
        job = Job.from_hash(raw)
        if owner is not None and job.owner != owner:
            raise JobNotFound(job_id)
        return job

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:
        """Jobs for ``job_ids`` in order, leaving out those that no longer exist (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        return [Job.from_hash(raw) for raw in pipe.execute() if raw]

    def get_result(self, job_id: str, owner: str | None = None) -> Result:
        """The stored result; raises JobNotFound, ResultNotReady (with status) or ResultExpired.

        Record and result are read in one round trip.
        """
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.job(job_id))
        pipe.get(self.keys.result(job_id))
        raw, data = pipe.execute()
        if not raw:
            raise JobNotFound(job_id)
        job = Job.from_hash(raw)
        if owner is not None and job.owner != owner:
            raise JobNotFound(job_id)
        if job.status is not JobStatus.SUCCEEDED:
            raise ResultNotReady(job_id, job.status.value)
        if data is None:
            raise ResultExpired(job_id)
        return Result(data=data, media_type=job.result_type or JSON_MEDIA_TYPE)

    def list_jobs(
        self,
        *,
        owner: str | None = None,
        status: JobStatus | None = None,
        task: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        scan_budget: int = 5000,
    ) -> tuple[list[Job], str | None]:
        """A page of jobs, newest first, and the cursor of the next page (None at the end).

        The cursor is the creation sequence number of the last job examined, so a page never skips or
        repeats a job even while new ones are created. Raises ValueError for a malformed cursor.
        """
        page = self.search_jobs(JobFilter(owner=owner, status=status, task=task), limit=limit, cursor=cursor,
                                budget=scan_budget)
        return page.jobs, page.next_cursor

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel: queued -> cancelled now; running -> cancel requested (the worker stops it)."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        k = self._job_queue_keys(job_id)
        reply = self._cancel(
            keys=[self.keys.job(job_id), self.keys.pending, *k.block],
            args=[job_id, owner or "", self.settings.record_ttl_seconds, self.keys.events(job_id),
                  secrets.token_hex(8),  # redis-py re-sends it unchanged after a lost reply: see cancel.lua
                  *k.block_args],
        )
        kind = text(reply[0])
        if kind == "missing":
            raise JobNotFound(job_id)
        if kind == "illegal":
            raise IllegalTransition(job_id, text(reply[1]), JobStatus.CANCELLED.value)
        return self.get(job_id)

    def retry(self, job_id: str, owner: str | None = None) -> Job:
        """Queue a failed or cancelled job again with a fresh attempt budget."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        k = self._job_queue_keys(job_id)
        reply = self._retry(
            keys=[self.keys.job(job_id), self.keys.failed, self.keys.pending, *k.block],
            args=[job_id, owner or "", self.keys.events(job_id), secrets.token_hex(8), *k.block_args],  # see retry.lua
        )
        kind = text(reply[0])
        if kind == "missing":
            raise JobNotFound(job_id)
        if kind == "illegal":
            raise IllegalTransition(job_id, text(reply[1]), JobStatus.QUEUED.value)
        return self.get(job_id)

    def _job_queue_keys(self, job_id: str) -> Keys:
        """The keys of the queue a job is in (its queue never changes; jobs from before queues: the default)."""
        queue = self.redis.hget(self.keys.job(job_id), "queue")
        return self.keys.for_queue(text(queue) if queue else self.settings.queue)

    def task_info(self, name: str, max_age: float = 2.0) -> TaskInfo | None:
        """One published task, from a catalogue cached up to ``max_age`` s (the submit hot path).

        A name missing from the cache is looked up afresh at once, so a task that a newly deployed
        worker just published is accepted without waiting for the cache to age.
        """
        fetched, catalogue = self._task_cache
        info = catalogue.get(name)
        if info is not None and time.monotonic() - fetched < max_age:
            return info
        catalogue = self.tasks()
        self._task_cache = (time.monotonic(), catalogue)
        return catalogue.get(name)


__all__ = ["JSON_MEDIA_TYPE", "ClaimedJob", "Finish", "JobStore", "ReapReport", "Submission", "TaskStatus",
           "connect", "queue_entry", "request_digest"]
