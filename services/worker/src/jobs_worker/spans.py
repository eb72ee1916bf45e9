"""Trace spans of the attempts a worker runs (only while tracing is on: see :mod:`jobs_core.tracing`).

The spans are made here, in the worker's supervising process, around the child's execution, not in the
child: the child can be SIGKILLed at any moment (hard timeout, cancel, lost lease) and spans it had not
exported would be lost with it, while the supervisor sees every way an attempt ends. Per attempt:

- ``run <task>`` (consumer): a child of the submission's enqueue span (its ``traceparent`` is stored in the
  job record) and linked to it; from the claim until Redis has the outcome; ``jobs.outcome`` attribute.
  The Redis call that stores the outcome is its child when it is the only job of that call.
- ``execute <task>``: child of the above, the time the task ran in the child process.
- an attempt whose worker died is recorded by the worker whose reaper recovers it: a ``run <task>`` span
  from the attempt's start to the reap, outcome ``lost`` (its real worker could not end it).

The child receives the submission's ``traceparent`` with the job, so task log lines carry the trace id.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis
from jobs_core import tracing
from jobs_core.model import JobError, Result
from jobs_core.serialization import dumps
from jobs_core.store import ClaimedJob, JobStore


class RunSpans:
    """Open spans of this worker's attempts, by (job id, attempt)."""

    def __init__(self, store: JobStore, worker_id: str) -> None:
        self.store = store
        self.worker_id = worker_id
        self.open: dict[tuple[str, int], tuple[Any, Any]] = {}  # -> (run span, execute span | None)

    def claimed(self, jobs: list[ClaimedJob]) -> list[ClaimedJob]:
        """Start the spans of newly claimed attempts; the jobs with their submission ``trace`` filled in.
        (One extra round trip per claim, only while tracing is on.)"""
        if not tracing.enabled() or not jobs:
            return jobs
        try:
            fields = self.store.trace_fields([j.id for j in jobs])
        except redis.RedisError:  # the jobs are claimed: run them; their spans start a trace of their own
            fields = [{} for _ in jobs]
        out = []
        for job, f in zip(jobs, fields, strict=True):
            job = replace(job, trace=f.get("trace") or None)
            run = tracing.start_run_span(job.id, job.task, job.queue, job.attempt, job.trace)
            run.set_attribute("jobs.worker", self.worker_id)
            if tracing.record_params():  # JOBS_TRACE_PARAMS=1 only: params may hold personal data
                run.set_attribute("jobs.params", tracing.clip(dumps(job.params)))
            execute = tracing.tracer().start_span(f"execute {job.task}", context=_in(run))
            self.open[(job.id, job.attempt)] = (run, execute)
            out.append(job)
        return out

    def ran(self, job: ClaimedJob) -> None:
        """The child finished (or died running) the task: end the execute span."""
        spans = self.open.get((job.id, job.attempt))
        if spans is not None and spans[1] is not None:
            spans[1].end()
            self.open[(job.id, job.attempt)] = (spans[0], None)

    def span_of(self, jobs: Sequence[ClaimedJob]) -> Any:
        """The run span to make current for a Redis call about ``jobs`` (only when there is exactly one)."""
        if len(jobs) != 1:
            return None
        spans = self.open.get((jobs[0].id, jobs[0].attempt))
        return spans[0] if spans else None

    def ended(self, job: ClaimedJob, outcome: str, error: JobError | None = None, result: Result | None = None
              ) -> None:
        """The attempt's outcome is stored (or the attempt was lost): end its spans."""
        spans = self.open.pop((job.id, job.attempt), None)
        if spans is None:
            return
        run, execute = spans
        if result is not None and tracing.record_params() and result.media_type == "application/json":
            run.set_attribute("jobs.result", tracing.clip(result.data))
        if execute is not None:
            execute.end()
        tracing.end_run_span(run, outcome, error)

    def reaped(self, job_ids: Sequence[str], error: JobError) -> None:
        """Record the attempts this worker's reaper took back from lost workers (their own spans died
        with them): one ``run`` span each, from the attempt's start until now, outcome ``lost``."""
        if not tracing.enabled() or not job_ids:
            return
        now_ns = time.time_ns()
        try:
            rows = self.store.trace_fields(job_ids)
        except redis.RedisError:  # telemetry only: the reap itself is done
            return
        for job_id, f in zip(job_ids, rows, strict=True):
            if not f.get("task"):
                continue
            attempts = int(f.get("attempts") or 0)
            attempt = attempts - 1 if f.get("status") == "running" else attempts  # already claimed again
            started_ms = int(f.get("started_at") or 0)
            start_ns = started_ms * 1_000_000 if 0 < started_ms * 1_000_000 < now_ns else None
            span = tracing.start_run_span(job_id, f["task"], f.get("queue") or "", attempt, f.get("trace"),
                                          start_time_ns=start_ns)
            span.set_attribute("jobs.reaped_by", self.worker_id)
            tracing.end_run_span(span, "lost", error, end_time_ns=now_ns)

    def close(self) -> None:
        """Worker stopping: end what is still open (attempts left to the reaper)."""
        for run, execute in self.open.values():
            if execute is not None:
                execute.end()
            tracing.end_run_span(run, "abandoned")
        self.open.clear()


def _in(span: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(span)
