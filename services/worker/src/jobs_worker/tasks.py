"""Writing tasks: the ``@task`` decorator, the registry, and the context a task runs with.

A task is a function ``fn(params, ctx)``; ``params`` is the validated JSON object of the job and ``ctx``
a :class:`Context` for progress and cancellation. Its return value is the result: any JSON value, or a
:class:`BinaryResult` for bytes with a media type.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from jobs_core.config import is_queue_name
from jobs_core.errors import JobsError
from jobs_core.model import TaskInfo


class JobCancelled(JobsError):
    """Raised by :meth:`Context.check_cancelled` when the job's cancel was requested."""


@dataclass(frozen=True, slots=True)
class BinaryResult:
    """A non-JSON result: raw bytes served with ``media_type``."""

    data: bytes
    media_type: str = "application/octet-stream"


class Context(Protocol):
    """What a running task can do besides computing."""

    job_id: str
    attempt: int

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        """Report progress (0..1, or None for unknown) and an optional message."""

    @property
    def cancelled(self) -> bool:
        """True once the job's cancel was requested; long tasks may stop early."""

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job's cancel was requested."""

    def dependency_results(self) -> dict[str, Any]:
        """The results of this job's succeeded dependencies (``depends_on``, workflows), by job id: JSON
        results decoded, others as bytes. Empty for a job without dependencies."""


TaskFunction = Callable[[Mapping[str, Any], Context], Any]


@dataclass(frozen=True)
class Task:
    """A registered task: its function and its published description."""

    fn: TaskFunction
    info: TaskInfo = field(repr=False)
    #: the queue the task declared (None: the worker's default queue, JOBS_QUEUE)
    queue: str | None = None

    @property
    def name(self) -> str:
        """The task's name."""
        return self.info.name


REGISTRY: dict[str, Task] = {}


def task(
    name: str | None = None,
    *,
    params_schema: Mapping[str, Any] | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_attempts: int | None = None,
    defaults: Mapping[str, Any] | None = None,
    queue: str | None = None,
) -> Callable[[TaskFunction], TaskFunction]:
    """Register ``fn(params, ctx)`` as a task.

    ``params_schema`` is a JSON Schema for the params object (the API rejects jobs that fail it with 422);
    ``defaults`` are filled in for missing params; ``timeout`` (seconds) and ``max_attempts`` are the
    task's defaults when a submission does not set them. ``queue`` routes the task's jobs to that queue
    (default: the worker's default queue, ``JOBS_QUEUE``); a worker runs them only if it consumes it.
    """

    def register(fn: TaskFunction) -> TaskFunction:
        task_name = name or fn.__name__
        doc = (fn.__doc__ or "").strip()
        schema = dict(params_schema) if params_schema is not None else {"type": "object"}
        schema_defaults = {
            k: v["default"]
            for k, v in (schema.get("properties") or {}).items()
            if isinstance(v, dict) and "default" in v
        }
        info = TaskInfo(
            name=task_name,
            description=description if description is not None else doc.split("\n\n")[0],
            params_schema=schema,
            defaults={**schema_defaults, **(defaults or {})},
            timeout=timeout,
            max_attempts=max_attempts,
        )
        if queue is not None and not is_queue_name(queue):
            raise ValueError(f"task {task_name!r}: queue names are 1-64 letters, digits, '_', '.', '-'")
        REGISTRY[task_name] = Task(fn=fn, info=info, queue=queue)
        return fn

    return register


def published_info(t: Task, default_queue: str) -> TaskInfo:
    """The description a worker publishes for ``t``: its declared queue, else ``default_queue``."""
    return replace(t.info, queue=t.queue or default_queue)


def load_task_modules(modules: Iterable[str]) -> dict[str, Task]:
    """Import the built-in tasks and ``modules`` (which register theirs on import); return the registry."""
    importlib.import_module("jobs_worker.builtin_tasks")
    for module in modules:
        importlib.import_module(module)
    return REGISTRY
