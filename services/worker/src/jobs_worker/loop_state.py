"""What the parts of the worker loop share: the worker's state, declared once, and the helpers they all use.

:class:`jobs_worker.worker.Worker` is made of :class:`~jobs_worker.claiming.ClaimLoop` (claiming and
handing jobs to idle slots), :class:`~jobs_worker.supervision.ChildSupervision` (the children's pipes,
deadlines and progress), :class:`~jobs_worker.finishing.Finishing` (storing outcomes) and
:class:`~jobs_worker.leases.LeaseKeeping` (heartbeats, the reaper); each part reads and writes the
attributes declared here, which :meth:`Worker.__init__` sets.
"""

from __future__ import annotations

from typing import Any

import redis
from jobs_core import tracing
from jobs_core.config import Settings
from jobs_core.errors import BackendUnavailable
from jobs_core.store import ClaimedJob, JobStore

from jobs_worker.metrics import WorkerMetrics
from jobs_worker.outcomes import Outcome
from jobs_worker.podcost import PodDeletionCost
from jobs_worker.slot import Slot
from jobs_worker.spans import RunSpans
from jobs_worker.waker import Waker

#: Redis unreachable, failing over, or a write not confirmed on JOBS_ACK_REPLICAS replicas in time
#: (BackendUnavailable): the loop backs off and re-sends; outcomes are kept until Redis confirms them.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, BackendUnavailable)


def job_fields(job: ClaimedJob) -> dict[str, Any]:
    """The log fields naming a job's attempt (with the trace id when tracing is on), so one grep for the
    job id shows its whole story across the API and the workers."""
    fields: dict[str, Any] = {"job": job.id, "task": job.task, "attempt": job.attempt, "queue": job.queue}
    trace_id = tracing.log_trace_id(job.trace)
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields


class WorkerState:
    """The attributes of a worker that its loop's parts share (set by ``Worker.__init__``)."""

    settings: Settings
    store: JobStore
    worker_id: str
    metrics: WorkerMetrics
    pod_cost: PodDeletionCost
    spans: RunSpans
    waker: Waker
    concurrency: int
    once: bool
    burst: bool
    slots: list[Slot]
    unsaved: list[Outcome]  # outcomes Redis has not taken yet (it was down)
    claimed_any: bool
    waited_empty: bool
    claimed_short: bool
    stopping: bool
    heartbeat_interval: float
    next_heartbeat: float
    next_reap: float
    next_prune: float
    recheck_claims: bool
    started: float
    offered: dict[str, str]
    reap_queues: list[str]

    def _free(self) -> list[Slot]:
        return [s for s in self.slots if s.running is None]

    def _busy(self) -> list[Slot]:
        return [s for s in self.slots if s.running is not None]

    # the parts' calls into each other (the subclass that defines each is named)
    def _save(self, ended: list[Outcome], refill: bool = False) -> None:
        """Store outcomes (:meth:`jobs_worker.finishing.Finishing._save`)."""
        raise NotImplementedError

    def _dispatch(self, free: list[Slot], jobs: list[ClaimedJob]) -> None:
        """Hand claimed jobs to idle slots (:meth:`jobs_worker.claiming.ClaimLoop._dispatch`)."""
        raise NotImplementedError
