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
from redis.client import Pipeline
from redis.commands.core import Script

from jobs_core.config import Settings
from jobs_core.keys import Keys
from jobs_core.model import JobError, Result
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
    _claim: Script
    _finish: Script
    _finish_claim: Script
    _heartbeat: Script
    _progress: Script
    _reap: Script

    def _claim_keys(self, worker_id: str) -> list[str]:
        """KEYS of CLAIM, in order (FINISH_CLAIM takes the same, with the failed index before the memo)."""
        k = self.keys
        return [k.queue, k.inflight, k.leases, k.pending, k.delayed, k.orphans, k.dead_letter, k.claim_memo(worker_id)]

    def claim(self, worker_id: str, count: int, moved_entry: bytes | str | None = None) -> list[ClaimedJob]:
        """Take up to ``count`` queued jobs (plus ``moved_entry``, already moved into inflight)."""
        reply = self._claim(
            keys=self._claim_keys(worker_id),
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
            if status == b"running" and worker is not None and text(worker) == worker_id and attempts is not None
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
        pipe: Pipeline | None = None,
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
            keys=[*self._claim_keys(worker_id)[:-1], self.keys.failed, self.keys.claim_memo(worker_id)],
            args=[*args, secrets.token_hex(8)],  # the claim token, last: see FINISH_CLAIM
        )
        texts = [text(x) for x in statuses]
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
        items = [text(x) for x in reply]
        split = items.index("|")
        return ReapReport(ran=True, requeued=tuple(items[:split]), failed=tuple(items[split + 1 :]))

    def prune_indexes(self, batch: int = 200) -> int:
        """Drop index entries whose records expired, oldest first; return how many were dropped."""
        dropped = 0
        for index in (self.keys.index, self.keys.failed):
            ids = [text(x) for x in self.redis.zrange(index, 0, batch - 1)]
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
    if text(reply[0]) == "stale":
        return None
    return text(reply[1])


def _claimed_jobs(reply: Any) -> list[ClaimedJob]:
    """Jobs from a CLAIM reply (6 fields per job)."""
    return [
        ClaimedJob(
            id=text(reply[i]),
            task=text(reply[i + 1]),
            params=loads(reply[i + 2]),
            timeout=float(reply[i + 3]),
            attempt=int(reply[i + 4]),
            max_attempts=int(reply[i + 5]),
        )
        for i in range(0, len(reply), 6)
    ]


def text(value: Any) -> str:
    """``value`` as text (Redis replies are bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)
