"""``/queues`` resource: per-queue statistics (any role) and pause / resume / concurrency cap (admin)."""

from __future__ import annotations

import re

from flask import Blueprint, Response
from jobs_core.config import Role
from jobs_core.model import QueueStats

from jobs_api import openapi_queues
from jobs_api.audit import current_actor
from jobs_api.auth import protect, requires
from jobs_api.problems import Problem, validation_problem
from jobs_api.state import json_response, state
from jobs_api.validation import read_json_body, schema_errors

bp = Blueprint("queues", __name__)
protect(bp)

_NAME = re.compile(openapi_queues.QUEUE_NAME_PATTERN)


def _known(name: str) -> str:
    """``name`` when it is a queue some task, worker or setting names; else 404 (a typo never creates one)."""
    if not _NAME.match(name) or name not in state().store.queue_names():
        raise Problem(404, "Not Found", f"no queue named {name!r} (GET /queues lists them)", slug="queue-not-found")
    return name


def _stats(name: str) -> Response:
    stats: QueueStats = state().store.queue_stats(name)
    return json_response(stats.to_dict())


@bp.get("/queues")
@requires(Role.VIEWER)
def list_queues() -> Response:
    """Every known queue with its statistics, by name."""
    store = state().store
    return json_response({"queues": [store.queue_stats(name).to_dict() for name in store.queue_names()]})


@bp.get("/queues/<name>")
@requires(Role.VIEWER)
def get_queue(name: str) -> Response:
    """One queue's statistics with its run-time percentiles (``run_time``), or 404."""
    store = state().store
    stats = store.queue_stats(_known(name)).to_dict()
    return json_response({**stats, "run_time": store.queue_run_time(name)})


@bp.post("/queues/<name>/pause")
@requires(Role.ADMIN)
def pause(name: str) -> Response:
    """Pause the queue (idempotent): submissions are accepted, no worker starts its jobs."""
    state().store.pause_queue(_known(name), current_actor())
    return _stats(name)


@bp.post("/queues/<name>/resume")
@requires(Role.ADMIN)
def resume(name: str) -> Response:
    """Resume the queue (idempotent); its jobs keep their order."""
    state().store.resume_queue(_known(name), current_actor())
    return _stats(name)


@bp.put("/queues/<name>/cap")
@requires(Role.ADMIN)
def set_cap(name: str) -> Response:
    """Set (``{"cap": n}``) or remove (``{"cap": null}``) the queue's cluster-wide concurrency cap."""
    body = read_json_body()
    errors = schema_errors(openapi_queues.SCHEMAS["QueueCap"], body)
    if errors:
        raise validation_problem(errors)
    state().store.set_queue_cap(_known(name), body["cap"], current_actor())
    return _stats(name)
