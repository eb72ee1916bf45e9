"""``/schedules`` resource: cron schedules of the caller's tenant (define, read, list, pause, delete).

The ticks themselves are fired by the ticker threads of the API processes (``jobs_core.ticker``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from jobs_core.config import Role
from jobs_core.errors import InvalidSchedule, ScheduleLimit, ScheduleNotFound
from jobs_core.schedules import (
    DEFAULT_CATCHUP_WINDOW_SECONDS,
    SCHEDULE_NAME,
    CatchUp,
    Overlap,
    Schedule,
    ScheduleSpec,
)

from jobs_api import openapi_flows
from jobs_api.auth import current_tenant, protect, requires
from jobs_api.problems import Problem, task_unavailable, validation_problem
from jobs_api.state import json_response, state
from jobs_api.validation import TaskSchemaError, read_json_body, schema_errors, task_params_errors

bp = Blueprint("schedules", __name__)


protect(bp)


def not_found(name: str) -> Problem:
    """404 for a schedule that does not exist, is malformed or is another tenant's (indistinguishable)."""
    return Problem(404, "Not Found", f"no schedule named {name!r}", slug="schedule-not-found")


def schedule_body(sched: Schedule) -> dict[str, Any]:
    """The public representation: definition, state, next run times, links."""
    body = sched.to_dict(state().store.redis_now_ms())
    body["links"] = {"self": f"/schedules/{sched.name}",
                     "last_job": f"/jobs/{sched.last_job}" if sched.last_job else None}
    return body


def _name(name: str) -> str:
    if not SCHEDULE_NAME.match(name):
        raise not_found(name)
    return name


def spec_from_body(body: dict[str, Any]) -> ScheduleSpec:
    """Validate a definition (shape, task, params against the task's schema, cron, zone); 422 naming fields."""
    errors = schema_errors(openapi_flows.SCHEMAS["ScheduleRequest"], body)
    if errors:
        raise validation_problem(errors)
    info = state().store.task_info(body["task"])
    if info is None:
        raise validation_problem(
            [{"path": "/task", "message": f"unknown task {body['task']!r} (GET /tasks lists the known ones)"}]
        )
    params = body.get("params", {})
    try:
        errors = task_params_errors(info, {**info.defaults, **params})
    except TaskSchemaError as e:  # what a worker published is broken: not the client's fault, nor a 500
        raise task_unavailable(body["task"], str(e)) from e
    if errors:
        raise validation_problem(errors)
    spec = ScheduleSpec(
        task=body["task"], cron=body["cron"], params=params, timezone=body.get("timezone", "UTC"),
        priority=body.get("priority"), catchup=CatchUp(body.get("catchup", CatchUp.ONE.value)),
        catchup_window=body.get("catchup_window", DEFAULT_CATCHUP_WINDOW_SECONDS),
        overlap=Overlap(body.get("overlap", Overlap.ALLOW.value)), max_attempts=body.get("max_attempts"),
        timeout=body.get("timeout"),
    )
    try:
        spec.validate()
    except InvalidSchedule as e:
        raise validation_problem([{"path": p, "message": m} for p, m in e.errors]) from e
    return spec


@bp.put("/schedules/<name>")
@requires(Role.OPERATOR)
def put_schedule(name: str) -> Response:
    """Create (201) or replace (200) a schedule; an unchanged definition changes nothing (200)."""
    if not SCHEDULE_NAME.match(name):
        raise validation_problem(
            [{"path": "/path/name", "message": "1-64 letters, digits, '_', '.' or '-'"}], status=400
        )
    body = read_json_body()
    spec = spec_from_body(body)
    st = state()
    try:
        sched, outcome = st.store.put_schedule(
            current_tenant(), name, spec, paused=body.get("paused"),
            max_per_tenant=st.settings.max_schedules_per_tenant,
        )
    except ScheduleLimit as e:
        raise Problem(409, "Conflict", str(e), slug="schedule-limit", limit=e.limit) from e
    return json_response(schedule_body(sched), 201 if outcome == "created" else 200,
                         {"Location": f"/schedules/{name}"})


@bp.get("/schedules")
@requires(Role.VIEWER)
def list_schedules() -> Response:
    """Every schedule of the tenant, by name."""
    return json_response({"schedules": [schedule_body(s) for s in state().store.list_schedules(current_tenant())]})


@bp.get("/schedules/<name>")
@requires(Role.VIEWER)
def get_schedule(name: str) -> Response:
    """One schedule with its next run times and last fired tick."""
    try:
        return json_response(schedule_body(state().store.get_schedule(current_tenant(), _name(name))))
    except ScheduleNotFound as e:
        raise not_found(name) from e


@bp.delete("/schedules/<name>")
@requires(Role.OPERATOR)
def delete_schedule(name: str) -> Response:
    """Delete a schedule (204); the jobs it created stay."""
    try:
        state().store.delete_schedule(current_tenant(), _name(name))
    except ScheduleNotFound as e:
        raise not_found(name) from e
    return Response(status=204)


def _set_paused(name: str, paused: bool) -> Response:
    try:
        return json_response(schedule_body(state().store.set_schedule_paused(current_tenant(), _name(name), paused)))
    except ScheduleNotFound as e:
        raise not_found(name) from e


@bp.post("/schedules/<name>/pause")
@requires(Role.OPERATOR)
def pause_schedule(name: str) -> Response:
    """Pause: no tick is enqueued until resumed."""
    return _set_paused(name, True)


@bp.post("/schedules/<name>/resume")
@requires(Role.OPERATOR)
def resume_schedule(name: str) -> Response:
    """Resume from now: ticks that fell while paused are not caught up."""
    return _set_paused(name, False)
