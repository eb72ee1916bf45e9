"""Writing tasks: the ``@task`` decorator, the registry, and the context a task runs with.

A task is a function ``fn(params, ctx)``; ``params`` is the validated JSON object of the job and ``ctx``
a :class:`Context` (job id, attempt, logger, progress, cancellation). Its return value is the result: any
JSON value, or a :class:`BinaryResult` for bytes with a media type.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from jobs_core.config import is_queue_name
from jobs_core.errors import JobCancelled, Reject, Retry, TaskDefinitionError
from jobs_core.model import TaskInfo

#: A task's retry delay: base seconds of exponential backoff, seconds per retry, or ``attempt -> seconds``.
Backoff = float | Sequence[float] | Callable[[int], float]

MAX_TASK_NAME_LENGTH = 200  # as the API accepts in POST /jobs


@dataclass(frozen=True, slots=True)
class BinaryResult:
    """A non-JSON result: raw bytes served with ``media_type``."""

    data: bytes
    media_type: str = "application/octet-stream"


class JobLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.log``: a logger whose records carry the job's id, task, attempt, queue and tenant."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


class Context:
    """What a running task knows and can do besides computing: the ``ctx`` argument.

    ``job_id``, ``task``, ``attempt`` (1 on the first run), ``max_attempts``, ``tenant`` (the submitting
    API key's tenant, or None), ``queue``, ``deadline`` (``time.time()`` at which the attempt is killed),
    ``log`` (a :mod:`logging` logger whose lines carry the job's context), ``progress()``,
    ``cancelled`` / ``check_cancelled()``, ``time_left()`` and ``last_attempt``.
    """

    def __init__(
        self,
        *,
        job_id: str,
        task: str,
        attempt: int = 1,
        max_attempts: int = 1,
        tenant: str | None = None,
        queue: str = "jobs",
        deadline: float | None = None,
    ) -> None:
        self.job_id = job_id
        self.task = task
        self.attempt = attempt
        self.max_attempts = max_attempts
        self.tenant = tenant
        self.queue = queue
        self.deadline = deadline
        self.log = JobLogger(logging.getLogger(f"task.{task}"), self.log_fields())

    def log_fields(self) -> dict[str, Any]:
        """The job's context as log fields (every log line written while the job runs carries them)."""
        fields: dict[str, Any] = {"job": self.job_id, "task": self.task, "attempt": self.attempt,
                                  "queue": self.queue}
        if self.tenant is not None:
            fields["tenant"] = self.tenant
        return fields

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        """Report progress (0..1, or None for unknown) and an optional message (the last one is kept)."""
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        self._report_progress(fraction, None if message is None else str(message)[:1000])

    @property
    def cancelled(self) -> bool:
        """True once the job's cancel was requested; long tasks may stop early."""
        return self._cancel_requested()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job's cancel was requested."""
        if self._cancel_requested():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def time_left(self) -> float | None:
        """Seconds until the attempt's hard timeout kills it (None without a deadline)."""
        return None if self.deadline is None else max(0.0, self.deadline - time.time())

    @property
    def last_attempt(self) -> bool:
        """True when a failure now fails the job for good (no retry left)."""
        return self.attempt >= self.max_attempts

    # Where progress and cancellation come from: the worker's child process, or a local test run.
    def _report_progress(self, fraction: float | None, message: str | None) -> None:
        raise NotImplementedError

    def _cancel_requested(self) -> bool:
        raise NotImplementedError

    def dependency_results(self) -> dict[str, Any]:
        """The results of this job's succeeded dependencies (``depends_on``, workflows), by job id: JSON
        results decoded, others as bytes. Empty for a job without dependencies."""
        raise NotImplementedError


TaskFunction = Callable[[Mapping[str, Any], Context], Any]


@dataclass(frozen=True)
class Task:
    """A registered task: its function, its published description, and its retry policy."""

    fn: TaskFunction
    info: TaskInfo = field(repr=False)
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    no_retry_on: tuple[type[BaseException], ...] = ()
    backoff: Backoff | None = None
    #: the queue the task declared (None: the worker's default queue, JOBS_QUEUE)
    queue: str | None = None

    @property
    def name(self) -> str:
        """The task's name."""
        return self.info.name

    @property
    def where(self) -> str:
        """``task 'name' (module.function)``, for error messages."""
        return describe(self.info.name, self.fn)

    def should_retry(self, error: BaseException) -> bool:
        """Whether ``error`` raised by this task may be retried (while attempts remain)."""
        if isinstance(error, Reject):
            return False
        if isinstance(error, Retry):
            return True
        return isinstance(error, self.retry_on) and not isinstance(error, self.no_retry_on)

    def retry_delay(self, attempt: int, cap: float, rng: random.Random | None = None) -> float | None:
        """Seconds before retrying after ``attempt`` failed, by this task's ``backoff`` (None: the worker's)."""
        backoff = self.backoff
        if backoff is None:
            return None
        if callable(backoff):
            return max(0.0, float(backoff(attempt)))
        if isinstance(backoff, int | float):
            return exponential_backoff(float(backoff), cap, attempt, rng)
        steps = list(backoff)
        return max(0.0, float(steps[min(attempt, len(steps)) - 1]))


def describe(name: str, fn: Callable[..., Any]) -> str:
    """``task 'name' (module.function)``."""
    return f"task {name!r} ({getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')})"


def exponential_backoff(base: float, cap: float, attempt: int, rng: random.Random | None = None) -> float:
    """``base`` * 2**(attempt-1) capped at ``cap``, with equal jitter (half fixed, half random)."""
    if base <= 0:
        return 0.0
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


REGISTRY: dict[str, Task] = {}


def task(
    name: str | None = None,
    *,
    params_schema: Mapping[str, Any] | None = None,
    description: str | None = None,
    timeout: float | None = None,
    max_attempts: int | None = None,
    defaults: Mapping[str, Any] | None = None,
    retry_on: Sequence[type[BaseException]] | type[BaseException] = (Exception,),
    no_retry_on: Sequence[type[BaseException]] | type[BaseException] = (),
    backoff: Backoff | None = None,
    queue: str | None = None,
) -> Callable[[TaskFunction], TaskFunction]:
    """Register ``fn(params, ctx)`` as a task.

    ``params_schema`` is a JSON Schema for the params object (the API rejects jobs that fail it with 422;
    an invalid schema stops the worker at start); ``defaults`` are filled in for missing params;
    ``timeout`` (seconds) and ``max_attempts`` are the task's defaults when a submission does not set
    them. ``queue`` routes the task's jobs to that queue (default: the worker's default queue,
    ``JOBS_QUEUE``); a worker runs them only if it consumes it. Retry policy: an exception is retried
    when it is one of ``retry_on`` and none of ``no_retry_on`` (``jobs_worker.Reject`` is never retried);
    ``backoff`` is the delay before a retry: seconds (base of exponential backoff with jitter), a list of
    seconds per retry, or ``attempt -> seconds``; unset, the worker's ``JOBS_RETRY_BACKOFF_SECONDS``.
    """

    def register(fn: TaskFunction) -> TaskFunction:
        task_name = name or fn.__name__
        where = describe(task_name, fn)
        if not isinstance(task_name, str) or not 0 < len(task_name) <= MAX_TASK_NAME_LENGTH:
            raise TaskDefinitionError(f"{where}: the name must be 1-{MAX_TASK_NAME_LENGTH} characters")
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
        check_task_info(info, where)
        if queue is not None and not is_queue_name(queue):
            raise TaskDefinitionError(f"{where}: queue names are 1-64 letters, digits, '_', '.', '-'")
        REGISTRY[task_name] = Task(
            fn=fn,
            info=info,
            retry_on=_exception_types(retry_on, "retry_on", where),
            no_retry_on=_exception_types(no_retry_on, "no_retry_on", where),
            backoff=_check_backoff(backoff, where),
            queue=queue,
        )
        return fn

    return register


def published_info(t: Task, default_queue: str) -> TaskInfo:
    """The description a worker publishes for ``t``: its declared queue, else ``default_queue``."""
    return replace(t.info, queue=t.queue or default_queue)


def check_task_info(info: TaskInfo, where: str) -> None:
    """Raise :class:`TaskDefinitionError` (one line) when what the worker would publish is invalid (cheap
    checks; the params schema is checked by :func:`jobs_worker.schemas.check_params_schema`)."""
    if info.timeout is not None and not (isinstance(info.timeout, int | float) and info.timeout > 0):
        raise TaskDefinitionError(f"{where}: timeout must be a positive number of seconds")
    if info.max_attempts is not None and not (
        isinstance(info.max_attempts, int) and not isinstance(info.max_attempts, bool) and info.max_attempts >= 1
    ):
        raise TaskDefinitionError(f"{where}: max_attempts must be an integer >= 1")


def _exception_types(
    value: Sequence[type[BaseException]] | type[BaseException], what: str, where: str
) -> tuple[type[BaseException], ...]:
    types = (value,) if isinstance(value, type) else tuple(value)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TaskDefinitionError(f"{where}: {what} must be exception classes, got {t!r}")
    return types


def _check_backoff(backoff: Backoff | None, where: str) -> Backoff | None:
    if backoff is None or callable(backoff):
        return backoff
    if isinstance(backoff, int | float) and not isinstance(backoff, bool) and backoff >= 0:
        return float(backoff)
    if (
        isinstance(backoff, Sequence)
        and backoff
        and all(isinstance(s, int | float) and not isinstance(s, bool) and s >= 0 for s in backoff)
    ):
        return tuple(float(s) for s in backoff)
    raise TaskDefinitionError(
        f"{where}: backoff must be seconds >= 0, a non-empty list of seconds, or a function of the attempt"
    )


def load_task_modules(modules: Iterable[str], cwd: str | None = None, *, check: bool = True) -> dict[str, Task]:
    """Import the built-in tasks and ``modules`` (which register theirs on import); return the registry.

    An entry is a module name, searched on ``sys.path`` and then in ``cwd`` (the directory the worker was
    started from), or a file path (``./mytasks.py``, ``/app/tasks/render.py``). Any failure, or with
    ``check`` a task whose params schema is invalid, is a :class:`TaskDefinitionError` with a one-line
    message saying what is wrong and how to fix it. (Slot children skip ``check``: the worker did it, and
    they start faster without the JSON Schema library.)
    """
    importlib.import_module("jobs_worker.builtin_tasks")
    base = os.path.abspath(cwd or os.getcwd())
    if base not in sys.path:
        sys.path.append(base)  # `JOBS_TASK_MODULES=mytasks jobs-worker` from the folder holding mytasks.py
    for entry in modules:
        if entry.endswith(".py") or os.sep in entry or "/" in entry:
            _import_file(entry, os.path.join(base, entry))
        else:
            _import_module(entry)
    if check:
        from jobs_worker.schemas import check_params_schema

        for registered in REGISTRY.values():
            check_params_schema(registered)
    return REGISTRY


def _import_module(name: str) -> None:
    try:
        importlib.import_module(name)
    except TaskDefinitionError:
        raise
    except ModuleNotFoundError as e:
        if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
            raise _failed(name, e) from None  # the module exists but imports something missing
        searched = ", ".join(p or "''" for p in sys.path)
        first = name.split(".")[0]
        raise TaskDefinitionError(
            f"cannot import task module {name!r}: no module {e.name!r} in the current "
            f"directory or on the import path (searched: {searched}); start jobs-worker from the folder "
            f"holding {first}.py, add that folder to PYTHONPATH, or give the file: "
            f"JOBS_TASK_MODULES=/path/to/{first}.py"
        ) from None
    except Exception as e:
        raise _failed(name, e) from None


def _import_file(entry: str, path: str) -> None:
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise TaskDefinitionError(
            f"cannot import task module {entry!r}: no file {path} "
            f"(a relative path is taken from the worker's current directory, {os.path.dirname(path) or '/'})"
        )
    name = os.path.splitext(os.path.basename(path))[0]
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.append(folder)  # so the module can import its neighbours
    existing = sys.modules.get(name)
    if existing is not None and os.path.abspath(getattr(existing, "__file__", "") or "") == path:
        return
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TaskDefinitionError(f"cannot import task module {entry!r}: {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except TaskDefinitionError:
        raise
    except Exception as e:
        del sys.modules[name]
        raise _failed(f"{entry} ({path})", e) from None


def _failed(what: str, error: BaseException) -> TaskDefinitionError:
    """One line for an exception raised while a task module was being imported, with where it happened."""
    if isinstance(error, SyntaxError):
        where = f"{error.filename}:{error.lineno}"
        detail = f"SyntaxError: {error.msg}"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        frames = [f for f in frames if "importlib" not in f.filename] or frames
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        detail = f"{type(error).__name__}: {error}"
    hint = " (install it in the worker's environment)" if isinstance(error, ModuleNotFoundError) else ""
    return TaskDefinitionError(f"task module {what} failed to import: {detail} at {where}{hint}")
