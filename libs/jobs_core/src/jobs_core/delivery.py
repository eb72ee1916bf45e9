"""Delivery: the worker side of :class:`jobs_core.store.JobStore` (claim, leases, finish, reaper).

Kept apart from the producer side so each module stays small; both are one store over one Redis
client, and every multi-key change is still one Lua script from :mod:`jobs_core.scripts`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.commands.core import Script

from jobs_core.config import Settings
from jobs_core.keys import Keys
from jobs_core.model import JobError, Result
from jobs_core.resend import LOST, NotSent, Packed, bulk, resent, script_once, send_once
from jobs_core.serialization import dumps, loads


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker has taken: enough to run it without another read."""

    id: str
    task: str
    params: Mapping[str, Any]
    timeout: float
    attempt: int
    max_attempts: int
    queue: str = "jobs"
    owner: str | None = None  # the submitting tenant
    #: the submission's W3C traceparent (filled in only while tracing is on: see jobs_core.tracing)
    trace: str | None = None


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


class Delivery:
    """Worker-side operations; mixed into :class:`jobs_core.store.JobStore`, which sets these up."""

    redis: redis.Redis
    settings: Settings
    keys: Keys
    #: queues this store claims from (a worker's ``JOBS_QUEUES``), in strict order
    queues: tuple[str, ...]
    #: task names the worker offers (None: any); a job of another task is parked, never run or failed
    offers: tuple[str, ...] | None
    _finish_claim: Script
    _heartbeat: Script
    #: what FINISH_CLAIM's KEYS and ARGV hold for every call of one worker, queues, offers and settings:
    #: (that identity, KEYS, ARGV before the claim count, offers, ARGV after the finish count, and those
    #: three stretches in the Redis protocol); see :meth:`_finish_claim_args`
    _finish_claim_static: tuple[tuple[Any, ...], list[str], list[Any], Any, list[Any], tuple[bytes, ...]] | None = None
    _progress: Script
    _reap: Script

    def _queue_keys(self) -> list[Keys]:
        return [self.keys.for_queue(q) for q in self.queues]

    def claim(self, worker_id: str, count: int) -> list[ClaimedJob]:
        """Take up to ``count`` queued jobs from the store's queues (see :meth:`finish_and_claim`)."""
        return self.finish_and_claim(worker_id, (), count)[1]

    def leased_to(self, worker_id: str) -> list[tuple[str, int]]:
        """``(id, attempt)`` of every job Redis says ``worker_id`` is running (one pass over the leases).

        For a worker that lost its connection: a claim whose reply was lost with it leased jobs to the
        worker that it never heard of.
        """
        pipe = self.redis.pipeline(transaction=False)
        for k in self._queue_keys():
            pipe.zrange(k.leases, 0, -1)
        ids = [text(raw) for rows in pipe.execute() for raw in cast(list[bytes], rows)]
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(self.keys.job(job_id), "status", "worker", "attempts")
        return [
            (job_id, int(attempts))
            for job_id, (status, worker, attempts) in zip(ids, pipe.execute(), strict=True)
            if status == b"running" and worker is not None and text(worker) == worker_id and attempts is not None
        ]

    def wait_for_work(self, timeout: float) -> bool:
        """Block up to ``timeout`` s until some queue of the store has work queued (its wake token)."""
        wake = [k.wake for k in self._queue_keys()]
        try:
            return self.redis.blpop(wake, timeout) is not None
        except redis.ResponseError as e:
            if not str(e).startswith("UNBLOCKED"):
                raise
            # the primary was demoted under the blocked call (a Sentinel failover): look for work now; the
            # claim meets READONLY, which the Sentinel connection turns into a reconnect to the new primary
            return True

    def heartbeat(
        self, worker_id: str, running: Sequence[tuple[str, int]], status: Mapping[str, Any], ttl: int
    ) -> tuple[list[str], list[str]]:
        """Extend leases of ``running`` (id, attempt) pairs; return (ids to cancel, ids lost)."""
        args: list[Any] = [worker_id, int(self.settings.lease_seconds * 1000), ttl, dumps(status),
                           self.keys.job_prefix, len(self.queues), *self.queues]
        for job_id, attempt in running:
            args.extend((job_id, attempt))
        cancel, lost = self._heartbeat(
            keys=[self.keys.workers, self.keys.worker(worker_id), *(k.leases for k in self._queue_keys())],
            args=args,
        )
        return [text(x) for x in cancel], [text(x) for x in lost]

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
    ) -> str | None:
        """End an attempt with ``outcome`` (succeeded, failed, cancelled, retry, handback).

        Returns the new status, or None when the attempt was no longer this worker's (stale).
        """
        finish = Finish(job_id, attempt, outcome, result, error, retry_delay)
        statuses, _ = self.finish_and_claim(worker_id, [finish], 0)
        return statuses[0]

    def finish_and_claim(
        self, worker_id: str, finishes: Sequence[Finish], claim: int
    ) -> tuple[list[str | None], list[ClaimedJob]]:
        """End attempts and claim up to ``claim`` more jobs in one round trip (the worker's hot path).

        Returns the new status of each finish (None when the attempt was no longer this worker's) and
        the claimed jobs. Same checks and transitions as :meth:`finish` and :meth:`claim`.
        """
        keys, args = self._finish_claim_args(worker_id, finishes, claim)
        statuses, claimed = self._finish_claim_sent(keys, args)
        texts = [text(x) for x in statuses]
        return [None if t.startswith("stale:") else t for t in texts], _claimed_jobs(claimed)

    def _finish_claim_args(
        self, worker_id: str, finishes: Sequence[Finish], claim: int
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one FINISH_CLAIM call (a new claim token each time).

        What does not change between a worker's calls (the queue blocks' 17 keys per queue, prefixes, TTLs,
        the offered tasks) is built once and reused: rebuilding it was most of the Python between a child's
        result and the finish call (issue 16, round trip)."""
        ident = (worker_id, self.queues, self.offers, id(self.settings), self.keys, self._finish_claim.sha)
        static = self._finish_claim_static
        if static is None or static[0] != ident:
            s = self.settings
            queues = self._queue_keys()
            keys = [self.keys.pending, self.keys.failed, self.keys.claim_memo(worker_id),
                    *(key for k in queues for key in k.claim_block)]
            head: list[Any] = [worker_id, int(s.lease_seconds * 1000), self.keys.job_prefix, self.keys.result_prefix,
                               self.keys.events_prefix, s.result_ttl_seconds, s.record_ttl_seconds, s.history_seconds]
            offers: Any = "" if self.offers is None else dumps(list(self.offers))
            tail: list[Any] = [a for k in queues for a in k.claim_block_args]
            packed = (bulk([self._finish_claim.sha, len(keys), *keys, *head]), bulk([offers, len(queues)]), bulk(tail))
            static = (ident, keys, head, offers, tail, packed)
            self._finish_claim_static = static
        _, keys, head, offers, tail, _ = static
        args: list[Any] = [*head, claim, offers, len(self.queues), len(finishes), *tail]
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
        return keys, [*args, secrets.token_hex(8)]  # the claim token, last: see FINISH_CLAIM

    def finish_call_prefix(self, worker_id: str, memo_key: str) -> bytes:
        """FINISH_CLAIM ending one attempt leased to ``worker_id`` and claiming nothing, in the Redis protocol
        up to the finish's 7 fields (id, attempt, outcome, result, media type, error, retry delay ms) and the
        numbered claim token, which the caller appends as 8 bulk strings; ``memo_key`` is the call's claim
        memo (KEYS[3]). For a process that finishes a worker's attempts on a connection of its own (a slot
        child, ``jobs_worker.child_finish``): with a memo of its own, its re-sent calls and the worker's
        never read or replace each other's."""
        keys, args = self._finish_claim_args(worker_id, [Finish("", 0, "succeeded")], 0)
        keys = [*keys[:2], memo_key, *keys[3:]]
        return b"*%d\r\n$7\r\nEVALSHA\r\n" % (3 + len(keys) + len(args)) + bulk(
            [self._finish_claim.sha, len(keys), *keys, *args[:-8]])

    def _finish_claim_packed(self, keys: list[str], args: list[Any], last: str) -> Packed | None:
        """The ``EVALSHA`` of FINISH_CLAIM with ``keys``, ``args`` (from :meth:`_finish_claim_args`) and ``last``
        in place of the last argument, in the Redis protocol: the stretches every call of this worker repeats
        (~45 of a job's ~55 arguments) were packed once, the rest is packed here (hiredis formatted every
        argument anew: a sixth of the worker's instructions per job, issue 16's round trip). None when
        ``keys`` are not the current cached ones (then the arguments are packed as usual)."""
        static = self._finish_claim_static
        if static is None or keys is not static[1]:
            return None
        head, tail, (first, middle, rest) = len(static[2]), len(static[4]), static[5]
        argc = 3 + len(keys) + len(args)
        data = b"".join((b"*%d\r\n$7\r\nEVALSHA\r\n" % argc, first, bulk((args[head],)), middle,
                         bulk((args[head + 3],)), rest, bulk([*args[head + 4 + tail:-1], last])))
        return Packed("EVALSHA", data, argc)

    def _finish_claim_sent(self, keys: list[str], args: list[Any], first: int = 1) -> Any:
        """Run FINISH_CLAIM, re-sent (numbered) after a lost reply: ``<token>:<send number>`` as the last
        argument, so the first send skips the claim memo's read (:mod:`jobs_core.resend`)."""
        token = args[-1]

        def send(n: int) -> Any:
            last = f"{token}:{n}"
            return script_once(self.redis, self._finish_claim, keys, [*args[:-1], last], self.settings,
                               self.keys.ack_fence, self._finish_claim_packed(keys, args, last))

        return resent(send, first)

    def wait_and_claim(self, worker_id: str, count: int, timeout: float) -> list[ClaimedJob]:
        """An idle worker's wait: block up to ``timeout`` s for a wake token of the store's queues, then claim
        up to ``count`` jobs, whether a token came or not (the idle loop's periodic look for work).

        The claim is pipelined behind the ``BLPOP`` on the same connection, so Redis runs it the moment the
        token arrives: no reply to the worker and new request in between, one process wake-up less on the
        path from submission to start (issue 16, round trip). A claim that must be confirmed on replicas
        (``JOBS_ACK_REPLICAS``) or meets an empty script cache is made as a call of its own after the wait.
        """
        # -count: a claim after the wait, which may have taken a wake token, passes one on when it fills up
        # with work maybe left (FINISH_CLAIM's ARGV 9); other claims wake nobody (no LLEN per call)
        if self.settings.ack_replicas > 0:
            return self.finish_and_claim(worker_id, (), -count)[1] if self.wait_for_work(timeout) else []
        keys, args = self._finish_claim_args(worker_id, (), -count)
        try:
            last = f"{args[-1]}:1"
            woke, reply = send_once(self.redis, [
                ("BLPOP", *(k.wake for k in self._queue_keys()), timeout),
                self._finish_claim_packed(keys, args, last)
                or ("EVALSHA", self._finish_claim.sha, len(keys), *keys, *args[:-1], last),
            ])
        except NotSent:
            raise  # no connection: nothing was sent
        except LOST:
            # the claim may have run: the same claim again, numbered as a re-send (answered from the memo)
            return _claimed_jobs(self._finish_claim_sent(keys, args, first=2)[1])
        if isinstance(woke, redis.ResponseError) and not str(woke).startswith("UNBLOCKED"):
            raise woke  # UNBLOCKED: the primary was demoted under the wait (see wait_for_work); the claim ran
        if isinstance(reply, redis.exceptions.NoScriptError):
            # it did not run: the ordinary call loads the script and sends this claim (first send) again
            return _claimed_jobs(self._finish_claim_sent(keys, args)[1])
        if isinstance(reply, Exception):
            raise reply
        return _claimed_jobs(reply[1])

    def reap(self, token: str | None = None, queue: str | None = None) -> ReapReport:
        """One reaper pass over ``queue`` (default: the store's first), unless another worker ran one
        this interval (see ``reap.lua``)."""
        s = self.settings
        k = self.keys.for_queue(queue or self.queues[0])
        lost = JobError("WorkerLost", "the worker running this job stopped heartbeating (killed or lost)")
        reply = self._reap(
            keys=[self.keys.failed, self.keys.pending, k.reaper_lock, *k.block],
            args=[
                token or secrets.token_hex(8),
                int(s.reaper_interval_seconds * 1000),
                self.keys.job_prefix,
                self.keys.events_prefix,
                s.record_ttl_seconds,
                int(s.lease_seconds * 1000),
                1000,
                dumps(lost.to_dict()),
                s.history_seconds,
                *k.block_args,
            ],
        )
        if reply and reply[0] == -1:
            return ReapReport(ran=False)
        items = [text(x) for x in reply]
        split = items.index("|")
        return ReapReport(ran=True, requeued=tuple(items[:split]), failed=tuple(items[split + 1 :]))

    def trace_fields(self, job_ids: Sequence[str]) -> list[dict[str, str]]:
        """Per job: its submission ``trace`` and the fields a span of its attempt needs (task, queue,
        attempts, started_at, status), in one round trip. Called only while tracing is on."""
        names = ("trace", "task", "queue", "attempts", "started_at", "status")
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(self.keys.job(job_id), *names)
        return [{n: text(v) for n, v in zip(names, row, strict=True) if v is not None} for row in pipe.execute()]

    def prune_indexes(self, batch: int = 200, max_batches: int = 250) -> int:
        """Drop index entries whose records expired, oldest first; return how many were dropped from the job
        index and the failed set.

        Each of those two is read batch by batch (an ``EXISTS`` per entry) while a batch finds an expired
        record, up to ``max_batches``, stepping over live ones (a job still waiting or running ahead of
        expired ones does not stop the pass). Tenant indexes hold the same ids as the job index (both are
        written by the script that creates the job), so they need no reads of their own: the ids dropped
        from the job index are dropped from each tenant's index (one variadic ``ZREM`` per tenant and
        batch), and anything a tenant index holds below the job index's oldest entry is an id the job index
        dropped earlier (one ``ZREMRANGEBYSCORE`` per tenant and pass: entries left by versions that did not
        prune tenant indexes, which only listing pruned). Tenants are the fields of the pending hash (every
        tenant that ever queued a job).
        """
        tenant_indexes = [self.keys.owner_index(text(t)) for t in self.redis.hkeys(self.keys.pending)]
        dropped = 0
        for index in (self.keys.index, self.keys.failed):
            also = tenant_indexes if index == self.keys.index else []
            offset = 0
            for _ in range(max_batches):
                ids = [text(x) for x in self.redis.zrange(index, offset, offset + batch - 1)]
                if not ids:
                    break
                pipe = self.redis.pipeline(transaction=False)
                for job_id in ids:
                    pipe.exists(self.keys.job(job_id))
                gone = [job_id for job_id, alive in zip(ids, pipe.execute(), strict=True) if not alive]
                if not gone:
                    break  # a whole batch of live records: the rest is newer
                pipe = self.redis.pipeline(transaction=False)
                for key in (index, *also):
                    pipe.zrem(key, *gone)
                dropped += int(pipe.execute()[0])
                offset += len(ids) - len(gone)
        if tenant_indexes:
            # the job index's oldest entry, else (empty: no job exists) the sequence counter read before it
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(self.keys.seq)
            pipe.zrange(self.keys.index, 0, 0, withscores=True)
            seq, oldest = pipe.execute()
            bound = f"({int(oldest[0][1])}" if oldest else (str(int(seq)) if seq is not None else None)
            if bound is not None:
                pipe = self.redis.pipeline(transaction=False)
                for key in tenant_indexes:
                    pipe.zremrangebyscore(key, "-inf", bound)
                pipe.execute()
        return dropped

def _claimed_jobs(reply: Any) -> list[ClaimedJob]:
    """Jobs from a claim reply (8 fields per job)."""
    return [
        ClaimedJob(
            id=text(reply[i]),
            task=text(reply[i + 1]),
            params=loads(reply[i + 2]),
            timeout=float(reply[i + 3]),
            attempt=int(reply[i + 4]),
            max_attempts=int(reply[i + 5]),
            queue=text(reply[i + 6]),
            owner=text(reply[i + 7]) if reply[i + 7] else None,
        )
        for i in range(0, len(reply), 8)
    ]


def text(value: Any) -> str:
    """``value`` as text (Redis replies are bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
