"""The one module that talks to Redis: job records, the queue, leases, indexes and task catalogue.

Producers (the API) and the worker both use :class:`JobStore`; every multi-key change is one Lua
script from :mod:`jobs_core.scripts`, registered once per store.
"""

from __future__ import annotations

import hashlib
import secrets
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jobs_core import scripts
from jobs_core.config import Settings
from jobs_core.errors import (
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    QueueFull,
    ResultExpired,
    ResultNotReady,
)
from jobs_core.model import (
    Job,
    JobError,
    JobStatus,
    Result,
    TaskInfo,
    is_job_id,
    new_job_id,
)
from jobs_core.serialization import dumps, loads

JSON_MEDIA_TYPE = "application/json"


def connect(settings: Settings, *, socket_timeout: float | None = 10.0) -> redis.Redis:
    """A pooled Redis client for ``settings`` (password, TLS, retries on connection errors)."""
    kwargs: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if settings.redis_password:
        kwargs["password"] = settings.redis_password
    if settings.redis_url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        if settings.redis_tls_ca_file:
            kwargs["ssl_ca_certs"] = settings.redis_tls_ca_file
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def queue_entry(job_id: str) -> str:
    """The queue list entry for a job: its id JSON-encoded, as ``hotqueue(serializer=json)`` writes."""
    return f'"{job_id}"'


def request_digest(task: str, params: Mapping[str, Any], **options: Any) -> str:
    """A stable digest of a submission, to tell an idempotent repeat from a different request."""
    body = dumps({"task": task, "params": params, **options})
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker has taken: enough to run it without another read."""

    id: str
    task: str
    params: Mapping[str, Any]
    timeout: float
    attempt: int
    max_attempts: int


@dataclass(frozen=True, slots=True)
class Finish:
    """How one attempt ends, for :meth:`JobStore.finish_and_claim` (fields as :meth:`JobStore.finish`)."""

    job_id: str
    attempt: int
    outcome: str  # succeeded | failed | cancelled | retry | handback
    result: Result | None = None
    error: JobError | None = None
    retry_delay: float = 0.0


@dataclass(frozen=True, slots=True)
class ReapReport:
    """What one reaper pass did (``ran`` is False when another worker had the lock)."""

    ran: bool
    requeued: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class JobStore:
    """Job storage and queue operations on one Redis, for one namespace and queue."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.keys = settings.keys
        self._enqueue = client.register_script(scripts.ENQUEUE)
        self._claim = client.register_script(scripts.CLAIM)
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._progress = client.register_script(scripts.PROGRESS)
        self._finish = client.register_script(scripts.FINISH)
        self._finish_claim = client.register_script(scripts.FINISH_CLAIM)
        self._cancel = client.register_script(scripts.CANCEL)
        self._retry = client.register_script(scripts.RETRY)
        self._reap = client.register_script(scripts.REAP)
        self._list = client.register_script(scripts.LIST)
        # one pub/sub connection per thread, reused by every wait(): no connect + handshake per job
        self._local = threading.local()
        self._task_cache: tuple[float, dict[str, TaskInfo]] = (float("-inf"), {})

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
        owner: str = "default",
        max_attempts: int | None = None,
        timeout: float | None = None,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        max_pending: int | None = None,
        max_pending_per_tenant: int | None = None,
    ) -> tuple[Job, bool]:
        """Store a job and queue it in one atomic step; return ``(job, created)``.

        ``created`` is False when ``idempotency_key`` was already used for the same request, in which
        case the earlier job is returned. Raises :class:`QueueFull` or :class:`IdempotencyConflict`.
        """
        s = self.settings
        job_id = new_job_id()
        attempts = max_attempts if max_attempts is not None else s.default_max_attempts
        job_timeout = float(timeout if timeout is not None else s.default_timeout_seconds)
        params_json = dumps(params)
        digest = ""
        idem_key = self.keys.idempotency(owner, "-")
        if idempotency_key is not None:
            digest = request_digest(task, params, max_attempts=max_attempts, timeout=timeout, delay=delay)
            idem_key = self.keys.idempotency(owner, hashlib.sha256(idempotency_key.encode()).hexdigest())
        reply = self._enqueue(
            keys=[
                self.keys.job(job_id),
                self.keys.queue,
                self.keys.delayed,
                self.keys.index,
                self.keys.owner_index(owner),
                self.keys.pending,
                self.keys.seq,
                idem_key,
            ],
            args=[
                job_id,
                task,
                params_json,
                attempts,
                job_timeout,
                owner,
                int(delay * 1000),
                max_pending or 0,
                max_pending_per_tenant or 0,
                "1" if idempotency_key is not None else "0",
                digest,
                s.idempotency_ttl_seconds,
                queue_entry(job_id),
                self.keys.job_prefix,
            ],
        )
        kind = _text(reply[0])
        if kind == "full":
            scope = _text(reply[1])
            raise QueueFull(scope, (max_pending if scope == "global" else max_pending_per_tenant) or 0)
        if kind == "conflict":
            raise IdempotencyConflict(idempotency_key or "", _text(reply[1]))
        if kind == "exists":
            return self.get(_text(reply[1])), False
        created_ms = int(reply[2])
        created = datetime.fromtimestamp(created_ms / 1000, tz=UTC)
        job = Job(
            id=job_id,
            task=task,
            params=params,
            status=JobStatus.QUEUED,
            attempts=0,
            max_attempts=attempts,
            timeout=job_timeout,
            progress=None,
            message=None,
            created_at=created,
            started_at=None,
            finished_at=None,
            error=None,
            worker=None,
            owner=owner,
            seq=int(reply[3]),
            run_at=datetime.fromtimestamp((created_ms + int(delay * 1000)) / 1000, tz=UTC) if delay else None,
        )
        return job, True

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
        bound = "+inf"
        if cursor is not None:
            # ASCII digits only: str.isdigit() also accepts "²" or "٣", which Redis refuses as a score
            if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 19:
                raise ValueError("malformed cursor")
            bound = cursor
        index = self.keys.index if owner is None else self.keys.owner_index(owner)
        reply = self._list(
            keys=[index],
            args=[bound, limit, status.value if status else "", task or "", self.keys.job_prefix, scan_budget],
        )
        next_cursor = _text(reply[0]) or None
        jobs = self.get_many([_text(x) for x in reply[1:]])
        if status is not None or task is not None:
            # a job may have moved on between the scan and the read; keep the page honest
            jobs = [j for j in jobs if (status is None or j.status is status) and (task is None or j.task == task)]
        return jobs, next_cursor

    def cancel(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel: queued -> cancelled now; running -> cancel requested (the worker stops it)."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        reply = self._cancel(
            keys=[self.keys.job(job_id), self.keys.queue, self.keys.delayed, self.keys.pending],
            args=[job_id, owner or "", self.settings.record_ttl_seconds, self.keys.events(job_id)],
        )
        kind = _text(reply[0])
        if kind == "missing":
            raise JobNotFound(job_id)
        if kind == "illegal":
            raise IllegalTransition(job_id, _text(reply[1]), JobStatus.CANCELLED.value)
        return self.get(job_id)

    def retry(self, job_id: str, owner: str | None = None) -> Job:
        """Queue a failed or cancelled job again with a fresh attempt budget."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        reply = self._retry(
            keys=[self.keys.job(job_id), self.keys.queue, self.keys.failed, self.keys.pending],
            args=[job_id, owner or "", self.keys.events(job_id)],
        )
        kind = _text(reply[0])
        if kind == "missing":
            raise JobNotFound(job_id)
        if kind == "illegal":
            raise IllegalTransition(job_id, _text(reply[1]), JobStatus.QUEUED.value)
        return self.get(job_id)

    def wait(self, job_id: str, timeout: float, owner: str | None = None) -> Job:
        """Block until the job is terminal or ``timeout`` seconds pass; return it as it then is.

        Listens on the job's event channel (no polling loop on Redis). The record is read only once Redis
        has confirmed the subscription, so a change between the read and the wait cannot be missed (a
        SUBSCRIBE merely sent may be processed after the read); while nothing arrives the record is read
        again every second anyway (a message can be lost when the connection drops). The pub/sub
        connection is kept per thread and reused, so a wait costs no new connection.
        """
        if timeout <= 0:
            return self.get(job_id, owner)
        if not is_job_id(job_id):
            raise JobNotFound(job_id)
        deadline = time.monotonic() + timeout
        channel = self.keys.events(job_id)
        wanted = channel.encode()
        pubsub = self._pubsub()
        clean = False
        try:
            pubsub.subscribe(channel)
            while True:  # messages of channels an earlier wait on this connection left are skipped
                remaining = deadline - time.monotonic()
                message = pubsub.get_message(timeout=max(0.0, min(remaining, 1.0)))
                if message is not None and message["type"] == "subscribe" and message["channel"] == wanted:
                    break
                if remaining <= 0:
                    break
            job = self.get(job_id, owner)
            while not job.is_terminal:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                message = pubsub.get_message(timeout=min(remaining, 1.0))
                if message is None or (message["type"] == "message" and message["channel"] == wanted):
                    job = self.get(job_id, owner)
            clean = True
            return job
        finally:
            if clean:
                try:
                    pubsub.unsubscribe(channel)  # type: ignore[no-untyped-call]  # confirmation skipped later
                except redis.RedisError:
                    clean = False
            if not clean:  # an error left the connection in an unknown state: start afresh next time
                self._local.pubsub = None
                pubsub.close()

    def _pubsub(self) -> redis.client.PubSub:
        pubsub = getattr(self._local, "pubsub", None)
        if pubsub is None:
            pubsub = self.redis.pubsub()  # type: ignore[no-untyped-call]
            self._local.pubsub = pubsub
        return cast(redis.client.PubSub, pubsub)

    def tasks(self) -> dict[str, TaskInfo]:
        """Every task that workers have published, by name."""
        raw = self.redis.hgetall(self.keys.tasks)
        infos = (TaskInfo.from_dict(loads(v)) for v in raw.values())
        return {info.name: info for info in sorted(infos, key=lambda i: i.name)}

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

    def publish_tasks(self, infos: Iterable[TaskInfo]) -> None:
        """Make tasks known to producers (called by every worker at start)."""
        mapping = {info.name: dumps(info.to_dict()) for info in infos}
        if mapping:
            self.redis.hset(self.keys.tasks, mapping=mapping)  # type: ignore[arg-type]

    def counts(self) -> dict[str, int]:
        """How many jobs are queued, running, delayed, and in the failed index (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.llen(self.keys.queue)
        pipe.llen(self.keys.inflight)
        pipe.zcard(self.keys.delayed)
        pipe.zcard(self.keys.failed)
        queued, running, delayed, failed = pipe.execute()
        return {"queued": queued, "running": running, "delayed": delayed, "failed": failed}

    # ------------------------------------------------------------------ workers
    def claim(self, worker_id: str, count: int, moved_entry: bytes | str | None = None) -> list[ClaimedJob]:
        """Take up to ``count`` queued jobs (plus ``moved_entry``, already moved into inflight)."""
        reply = self._claim(
            keys=[
                self.keys.queue,
                self.keys.inflight,
                self.keys.leases,
                self.keys.pending,
                self.keys.delayed,
                self.keys.orphans,
                self.keys.dead_letter,
                self.keys.claim_memo(worker_id),
            ],
            args=[
                count,
                worker_id,
                int(self.settings.lease_seconds * 1000),
                self.keys.job_prefix,
                moved_entry or "",
                self.keys.events_prefix,
                secrets.token_hex(8),  # redis-py re-sends it unchanged when a reply is lost: see CLAIM
            ],
        )
        return _claimed_jobs(reply)

    def leased_to(self, worker_id: str) -> list[tuple[str, int]]:
        """``(id, attempt)`` of every job Redis says ``worker_id`` is running (one pass over in-flight).

        For a worker that lost its connection: a claim whose reply was lost with it leased jobs to the
        worker that it never heard of.
        """
        ids = []
        for raw in cast(list[bytes], self.redis.lrange(self.keys.inflight, 0, -1)):
            try:
                job_id = loads(raw)
            except ValueError:
                continue
            if isinstance(job_id, str):
                ids.append(job_id)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "status", "worker", "attempts")
        return [
            (job_id, int(attempts))
            for job_id, (status, worker, attempts) in zip(ids, pipe.execute(), strict=True)
            if status == b"running" and worker is not None and _text(worker) == worker_id and attempts is not None
        ]

    def wait_for_entry(self, timeout: float) -> bytes | None:
        """Block up to ``timeout`` s for a queue entry and move it into inflight (BLMOVE); claim it next."""
        entry = self.redis.blmove(self.keys.queue, self.keys.inflight, timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]
        return cast(bytes | None, entry)

    def heartbeat(
        self, worker_id: str, running: Sequence[tuple[str, int]], status: Mapping[str, Any], ttl: int
    ) -> tuple[list[str], list[str]]:
        """Extend leases of ``running`` (id, attempt) pairs; return (ids to cancel, ids lost)."""
        args: list[Any] = [worker_id, int(self.settings.lease_seconds * 1000), ttl, dumps(status),
                           self.keys.job_prefix]
        for job_id, attempt in running:
            args.extend((job_id, attempt))
        cancel, lost = self._heartbeat(
            keys=[self.keys.leases, self.keys.workers, self.keys.worker(worker_id)], args=args
        )
        return [_text(x) for x in cancel], [_text(x) for x in lost]

    def set_progress(
        self, worker_id: str, job_id: str, attempt: int, progress: float | None, message: str | None
    ) -> bool:
        """Record progress; False when this worker no longer holds this attempt."""
        done = self._progress(
            keys=[self.keys.job(job_id)],
            args=[worker_id, attempt, "" if progress is None else repr(float(progress)), message or ""],
        )
        return bool(done)

    def finish(
        self,
        worker_id: str,
        job_id: str,
        attempt: int,
        outcome: str,
        *,
        result: Result | None = None,
        error: JobError | None = None,
        retry_delay: float = 0.0,
        pipe: redis.client.Pipeline | None = None,
    ) -> str | None:
        """End an attempt with ``outcome`` (succeeded, failed, cancelled, retry, handback).

        Returns the new status, or None when the attempt was no longer this worker's (stale). With
        ``pipe`` the call is only queued on that pipeline and None is returned.
        """
        s = self.settings
        reply = self._finish(
            keys=[
                self.keys.job(job_id),
                self.keys.inflight,
                self.keys.leases,
                self.keys.result(job_id),
                self.keys.failed,
                self.keys.delayed,
                self.keys.queue,
                self.keys.pending,
            ],
            args=[
                job_id,
                worker_id,
                attempt,
                outcome,
                result.data if result else b"",
                result.media_type if result else "",
                s.result_ttl_seconds,
                s.record_ttl_seconds,
                dumps(error.to_dict()) if error else "",
                int(retry_delay * 1000),
                self.keys.events(job_id),
            ],
            client=pipe,
        )
        if pipe is not None:
            return None
        return parse_finish_reply(reply)

    def finish_and_claim(
        self, worker_id: str, finishes: Sequence[Finish], claim: int
    ) -> tuple[list[str | None], list[ClaimedJob]]:
        """End attempts and claim up to ``claim`` more jobs in one round trip (the worker's hot path).

        Returns the new status of each finish (None when the attempt was no longer this worker's) and
        the claimed jobs. Same checks and transitions as :meth:`finish` and :meth:`claim`.
        """
        s = self.settings
        args: list[Any] = [
            worker_id,
            int(s.lease_seconds * 1000),
            self.keys.job_prefix,
            self.keys.result_prefix,
            self.keys.events_prefix,
            s.result_ttl_seconds,
            s.record_ttl_seconds,
            claim,
            len(finishes),
        ]
        for f in finishes:
            args += [
                f.job_id,
                f.attempt,
                f.outcome,
                f.result.data if f.result else b"",
                f.result.media_type if f.result else "",
                dumps(f.error.to_dict()) if f.error else "",
                int(f.retry_delay * 1000),
            ]
        statuses, claimed = self._finish_claim(
            keys=[
                self.keys.queue,
                self.keys.inflight,
                self.keys.leases,
                self.keys.pending,
                self.keys.delayed,
                self.keys.orphans,
                self.keys.dead_letter,
                self.keys.failed,
                self.keys.claim_memo(worker_id),
            ],
            args=[*args, secrets.token_hex(8)],  # the claim token, last: see FINISH_CLAIM
        )
        texts = [_text(x) for x in statuses]
        return [None if t.startswith("stale:") else t for t in texts], _claimed_jobs(claimed)

    def reap(self, token: str | None = None) -> ReapReport:
        """One reaper pass, unless another worker ran one this interval (see ``REAP``)."""
        s = self.settings
        lost = JobError("WorkerLost", "the worker running this job stopped heartbeating (killed or lost)")
        reply = self._reap(
            keys=[
                self.keys.leases,
                self.keys.inflight,
                self.keys.queue,
                self.keys.failed,
                self.keys.pending,
                self.keys.orphans,
                self.keys.reaper_lock,
            ],
            args=[
                token or secrets.token_hex(8),
                int(s.reaper_interval_seconds * 1000),
                self.keys.job_prefix,
                self.keys.events_prefix,
                s.record_ttl_seconds,
                int(s.lease_seconds * 1000),
                1000,
                dumps(lost.to_dict()),
            ],
        )
        if reply and reply[0] == -1:
            return ReapReport(ran=False)
        items = [_text(x) for x in reply]
        split = items.index("|")
        return ReapReport(ran=True, requeued=tuple(items[:split]), failed=tuple(items[split + 1 :]))

    def prune_indexes(self, batch: int = 200) -> int:
        """Drop index entries whose records expired, oldest first; return how many were dropped."""
        dropped = 0
        for index in (self.keys.index, self.keys.failed):
            ids = [_text(x) for x in self.redis.zrange(index, 0, batch - 1)]
            if not ids:
                continue
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.exists(self.keys.job(job_id))
            gone = [job_id for job_id, alive in zip(ids, pipe.execute(), strict=True) if not alive]
            if gone:
                dropped += int(self.redis.zrem(index, *gone))
        return dropped


def parse_finish_reply(reply: Any) -> str | None:
    """The status from a FINISH reply, or None when stale."""
    if _text(reply[0]) == "stale":
        return None
    return _text(reply[1])


def _claimed_jobs(reply: Any) -> list[ClaimedJob]:
    """Jobs from a CLAIM reply (6 fields per job)."""
    return [
        ClaimedJob(
            id=_text(reply[i]),
            task=_text(reply[i + 1]),
            params=loads(reply[i + 2]),
            timeout=float(reply[i + 3]),
            attempt=int(reply[i + 4]),
            max_attempts=int(reply[i + 5]),
        )
        for i in range(0, len(reply), 6)
    ]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
