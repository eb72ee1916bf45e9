"""``/tasks`` resource: the tasks workers published (name, queue, description, params schema, defaults) and
whether a live worker offers each (``workers``, ``live``, ``queue_conflict``)."""

from __future__ import annotations

from flask import Blueprint, Response
from jobs_core.config import Role

from jobs_api.auth import protect, requires
from jobs_api.problems import Problem
from jobs_api.state import json_response, state

bp = Blueprint("tasks", __name__)
protect(bp)


@bp.get("/tasks")
@requires(Role.VIEWER)
def list_tasks() -> Response:
    """Every published task, sorted by name, with its live workers."""
    tasks = state().store.task_statuses()
    return json_response({"tasks": [tasks[name].to_dict() for name in sorted(tasks)]})


@bp.get("/tasks/<name>")
@requires(Role.VIEWER)
def get_task(name: str) -> Response:
    """One task with its live workers, or 404."""
    info = state().store.task_statuses().get(name)
    if info is None:
        raise Problem(404, "Not Found", f"no task named {name!r}", slug="task-not-found")
    return json_response(info.to_dict())
