"""``/tasks`` resource: the tasks workers published (name, queue, description, params schema, defaults) and
whether a live worker offers each (``workers``, ``live``, ``queue_conflict``)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from jobs_core.config import Role
from jobs_core.queues import TaskStatus

from jobs_api.auth import protect, requires
from jobs_api.problems import Problem
from jobs_api.state import json_response, state
from jobs_api.validation import schema_problem

bp = Blueprint("tasks", __name__)
protect(bp)


def _task_body(status: TaskStatus) -> dict[str, Any]:
    # a task that cannot take jobs (POST /jobs answers 503) says why
    problem = status.info.problem or schema_problem(status.info.params_schema)
    return status.to_dict() if problem is None else {**status.to_dict(), "problem": problem}


@bp.get("/tasks")
@requires(Role.VIEWER)
def list_tasks() -> Response:
    """Every published task, sorted by name, with its live workers."""
    tasks = state().store.task_statuses()
    return json_response({"tasks": [_task_body(tasks[name]) for name in sorted(tasks)]})


@bp.get("/tasks/<name>")
@requires(Role.VIEWER)
def get_task(name: str) -> Response:
    """One task with its live workers and its run-time percentiles over every queue, or 404."""
    store = state().store
    info = store.task_statuses().get(name)
    if info is None:
        raise Problem(404, "Not Found", f"no task named {name!r}", slug="task-not-found")
    return json_response({**_task_body(info), "run_time": store.task_run_time(name, store.queue_names())})
