"""Run a task in your own tests, in-process, without Redis or a worker.

    from jobs_worker.testing import run_task
    import mytasks

    def test_wordcount():
        assert run_task("wordcount", {"text": "a b a"}) == {"words": 3, "top": "a"}

:func:`run_task` does what a worker and the API do around a task: applies the task's defaults, validates
the params against its schema (:class:`jobs_core.errors.InvalidParams`, the API's 422), calls it with a
:class:`LocalContext`, and encodes the result as the worker stores it (:class:`ResultNotJSON` for a value
JSON cannot hold), returning it decoded as a client would read it. Exceptions the task raises propagate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from jobs_core.errors import InvalidParams
from jobs_core.serialization import loads

from jobs_worker.results import JSON_MEDIA_TYPE, encode_result
from jobs_worker.schemas import check_params_schema, params_validator
from jobs_worker.tasks import REGISTRY, BinaryResult, Context, Task

__all__ = ["InvalidParams", "LocalContext", "run_task"]


class LocalContext(Context):
    """A ``ctx`` for local runs: records progress in ``progress_updates``; ``cancel()`` requests a cancel;
    ``dependencies`` is what ``dependency_results()`` returns."""

    def __init__(self, **fields: Any) -> None:
        fields.setdefault("job_id", f"local-{uuid.uuid4()}")
        fields.setdefault("task", "local")
        super().__init__(**fields)
        self.progress_updates: list[tuple[float | None, str | None]] = []
        self.cancel_requested = False
        self.dependencies: dict[str, Any] = {}  # what dependency_results() returns

    def dependency_results(self) -> dict[str, Any]:
        """``self.dependencies`` (set it to what the task's dependencies would have returned)."""
        return dict(self.dependencies)

    def cancel(self) -> None:
        """Make ``ctx.cancelled`` true (as a ``POST /jobs/<id>/cancel`` would)."""
        self.cancel_requested = True

    def _report_progress(self, fraction: float | None, message: str | None) -> None:
        self.progress_updates.append((fraction, message))

    def _cancel_requested(self) -> bool:
        return self.cancel_requested


def find_task(task: str | Callable[..., Any]) -> Task:
    """The registered task of that name or function (import your task module first)."""
    for registered in REGISTRY.values():
        if registered.name == task or registered.fn is task:
            return registered
    raise LookupError(f"no task {task!r} is registered; import the module that defines it (with @task) first")


def run_task(
    task: str | Callable[..., Any],
    params: Mapping[str, Any] | None = None,
    *,
    ctx: LocalContext | None = None,
    attempt: int = 1,
    max_attempts: int | None = None,
    tenant: str | None = None,
    queue: str = "jobs",
) -> Any:
    """Run ``task`` (name or function) with ``params`` as a worker would; its result as a client reads it.

    Pass your own ``ctx=LocalContext(...)`` to inspect ``ctx.progress_updates`` afterwards or to
    ``ctx.cancel()`` beforehand; otherwise one is made with ``attempt``, ``max_attempts``, ``tenant``
    and ``queue``. A JSON result comes back decoded (tuples become lists); bytes as a
    :class:`BinaryResult`.
    """
    found = find_task(task)
    check_params_schema(found)  # as the worker does at start
    info = found.info
    full = {**info.defaults, **(params or {})}
    errors = sorted(params_validator(info.params_schema).iter_errors(full), key=lambda e: list(map(str, e.path)))
    if errors:
        raise InvalidParams([("/params" + "".join(f"/{p}" for p in e.absolute_path), e.message) for e in errors])
    if ctx is None:
        ctx = LocalContext(task=info.name, attempt=attempt, queue=queue, tenant=tenant,
                           max_attempts=max_attempts or info.max_attempts or 1)
    data, media_type = encode_result(found.fn(full, ctx))
    return loads(data) if media_type == JSON_MEDIA_TYPE else BinaryResult(data, media_type)
