"""Jobs API worker. Task authors: ``from jobs_worker import task, Context, BinaryResult``."""

from jobs_worker.tasks import BinaryResult, Context, JobCancelled, task

__all__ = ["BinaryResult", "Context", "JobCancelled", "task"]
