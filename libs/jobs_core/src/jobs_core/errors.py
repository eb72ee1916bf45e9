"""Every exception Jobs API raises on purpose derives from :class:`JobsError`."""

from __future__ import annotations


class JobsError(Exception):
    """Root of all Jobs API errors."""


class ConfigError(JobsError):
    """A setting from the environment is missing or invalid."""


class JobNotFound(JobsError):
    """No job with that id exists (or it is not visible to the caller)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class IllegalTransition(JobsError):
    """A status change that the job's current status does not allow; nothing was changed."""

    def __init__(self, job_id: str, current: str, target: str) -> None:
        super().__init__(f"job {job_id} cannot go from {current} to {target}")
        self.job_id = job_id
        self.current = current
        self.target = target


class QueueFull(JobsError):
    """A backpressure cap on pending jobs is reached; retry later."""

    def __init__(self, scope: str, limit: int) -> None:
        super().__init__(f"too many pending jobs ({scope} limit {limit})")
        self.scope = scope
        self.limit = limit


class IdempotencyConflict(JobsError):
    """An Idempotency-Key was reused with a different request body."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(f"idempotency key {key!r} was used for a different request (job {job_id})")
        self.key = key
        self.job_id = job_id


class UnknownTask(JobsError):
    """No worker has published a task of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown task {name!r}")
        self.name = name


class InvalidParams(JobsError):
    """Job parameters fail the task's JSON Schema."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in errors) or "invalid params")
        self.errors = errors


class ResultTooLarge(JobsError):
    """A task returned a result over the size cap."""


class ResultNotReady(JobsError):
    """The job has not succeeded (yet)."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} has no result: status is {status}")
        self.job_id = job_id
        self.status = status


class ResultExpired(JobsError):
    """The job succeeded but its result has expired."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"the result of job {job_id} has expired")
        self.job_id = job_id


class BackendUnavailable(JobsError):
    """Redis cannot be reached."""


class InvalidSchedule(JobsError):
    """A schedule definition is invalid (bad cron expression, unknown time zone, ...)."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in errors))
        self.errors = errors


class ScheduleNotFound(JobsError):
    """No schedule of that name exists for the tenant."""

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found")
        self.name = name


class ScheduleLimit(JobsError):
    """The tenant has as many schedules as allowed (JOBS_MAX_SCHEDULES_PER_TENANT)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a tenant may have at most {limit} schedules")
        self.limit = limit


class NotReplicated(BackendUnavailable):
    """A write ran on the primary but ``WAITAOF`` did not confirm it on enough replicas in time.

    It may or may not survive a failover: repeat it (a submission with the same Idempotency-Key), never
    count it as done.
    """

    def __init__(self, replicas: int, confirmed: int, local: int) -> None:
        super().__init__(
            f"the write was not confirmed on disk on {replicas} replica(s) in time "
            f"(confirmed: {confirmed} replica(s), primary: {'yes' if local else 'no'})"
        )
        self.replicas = replicas
        self.confirmed = confirmed


class InvalidWorkflow(JobsError):
    """A workflow (or depends_on) is invalid: duplicate or unknown references, a cycle."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in errors))
        self.errors = errors


class WorkflowNotFound(JobsError):
    """No workflow with that id exists for the tenant."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"workflow {workflow_id!r} not found")
        self.workflow_id = workflow_id


class UnsafeWebhookUrl(JobsError):
    """A webhook callback URL that may not be called (scheme, shape, or a non-public address)."""


class TaskDefinitionError(ConfigError):
    """A task module cannot be imported, or a task it defines is invalid (the worker refuses to start)."""


class ResultNotJSON(JobsError, TypeError):
    """A task returned a value that cannot be stored as JSON (names where and which type)."""


class SlotMessageInvalid(JobsError):
    """A message on the pipe between a worker and a slot's child is malformed, truncated or over its size
    limit; the worker handles the job as if the child had crashed (``jobs_worker.pipe``)."""


class JobCancelled(JobsError):
    """Raised inside a task by ``ctx.check_cancelled()`` when the job's cancel was requested."""


class Reject(JobsError):
    """Raise inside a task to fail the job at once, without retrying (e.g. params that can never work)."""


class Retry(JobsError):
    """Raise inside a task to retry the job (while attempts remain) after ``delay`` seconds.

    ``delay=None`` uses the task's backoff. Like any retried exception, it fails the job once
    ``max_attempts`` are spent.
    """

    def __init__(self, message: str = "retry requested by the task", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay
