"""Turning what a child reported into the outcome stored for a job attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass

from jobs_core.config import Settings
from jobs_core.model import JobError, Result
from jobs_core.store import ClaimedJob

from jobs_worker.results import too_large
from jobs_worker.tasks import exponential_backoff

# Errors that running again cannot fix: fail at once instead of retrying.
PERMANENT_ERRORS = frozenset({"UnknownTask", "ResultTooLarge"})


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an attempt ends: the FINISH outcome plus its result, error and retry delay."""

    job: ClaimedJob
    kind: str  # succeeded | failed | cancelled | retry | handback
    result: Result | None = None
    error: JobError | None = None
    retry_delay: float = 0.0
    final_message: str | None = None  # the task's last progress message, not yet written to Redis


def backoff_delay(settings: Settings, attempt: int, rng: random.Random | None = None) -> float:
    """The worker's default retry delay (``JOBS_RETRY_BACKOFF_SECONDS``, exponential with jitter, capped)."""
    return exponential_backoff(settings.retry_backoff_seconds, settings.retry_backoff_max_seconds, attempt, rng)


def success(settings: Settings, job: ClaimedJob, data: bytes, media_type: str) -> Outcome:
    """A returned value: succeeded, or failed when over the result size cap."""
    over = too_large(len(data), settings.max_result_bytes)
    if over is not None:
        return Outcome(job, "failed", error=JobError("ResultTooLarge", over))
    return Outcome(job, "succeeded", result=Result(data, media_type))


def failure(
    settings: Settings,
    job: ClaimedJob,
    error: JobError,
    *,
    cancelled: bool = False,
    retryable: bool = True,
    retry_delay: float | None = None,
) -> Outcome:
    """An exception, timeout or crash: cancelled, retried after backoff, or failed for good.

    ``retryable`` and ``retry_delay`` carry the task's retry policy (``retry_on``, ``Reject``, ``backoff``);
    a delay of None is the worker's exponential backoff.
    """
    if cancelled:
        return Outcome(job, "cancelled", error=None)
    if not retryable or error.type in PERMANENT_ERRORS or job.attempt >= job.max_attempts:
        return Outcome(job, "failed", error=error)
    delay = backoff_delay(settings, job.attempt) if retry_delay is None else max(0.0, retry_delay)
    return Outcome(job, "retry", error=error, retry_delay=delay)
