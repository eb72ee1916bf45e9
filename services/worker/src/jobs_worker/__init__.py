"""Jobs API worker. Task authors: ``from jobs_worker import task, Context, BinaryResult, Reject, Retry``."""

from jobs_core.errors import JobCancelled, Reject, Retry

from jobs_worker.tasks import BinaryResult, Context, task

__all__ = ["BinaryResult", "Context", "JobCancelled", "Reject", "Retry", "task"]
