"""``/tasks`` resource: the tasks workers published (name, description, params schema, defaults)."""

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
    """Every published task, sorted by name."""
    tasks = state().store.tasks()
    return json_response({"tasks": [tasks[name].to_dict() for name in sorted(tasks)]})


@bp.get("/tasks/<name>")
@requires(Role.VIEWER)
def get_task(name: str) -> Response:
    """One task, or 404."""
    info = state().store.tasks().get(name)
    if info is None:
        raise Problem(404, "Not Found", f"no task named {name!r}", slug="task-not-found")
    return json_response(info.to_dict())
