"""Console pages: login/logout, overview, workers, tasks and the "run task" form."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Response, redirect, render_template, request, url_for
from jobs_core import histogram
from jobs_core.config import Role
from werkzeug.wrappers import Response as BaseResponse

from jobs_api import ratelimit
from jobs_api.auth import requires
from jobs_api.console import bp, session, wants_html
from jobs_api.console.charts import sparkline
from jobs_api.console.session import current_principal
from jobs_api.jobs import create_job
from jobs_api.problems import Problem, validation_problem
from jobs_api.state import state
from jobs_api.validation import schema_problem

_MAX_FORM_FIELD = 64 * 1024


def _safe_next(target: str | None) -> str:
    # only a path inside the console: never an open redirect to another site
    if target and target.startswith("/ui") and not target.startswith("/ui//") and "\\" not in target:
        return target
    return url_for("ui.overview")


@bp.route("/login", methods=["GET", "POST"])
def login() -> BaseResponse | str:
    """The login form; POST opens a session for a valid API key."""
    if not state().auth.enabled:
        return redirect(url_for("ui.overview"), 303)
    target = _safe_next(request.values.get("next"))
    if request.method == "GET":
        return render_template("login.html", next=target, error=None)
    key = request.form.get("api_key", "")
    lim, address = ratelimit.limiter(), ratelimit.client_address()
    try:
        if lim is not None and key:
            lim.check(address, key)
        if not key or len(key) > 4096 or session.login(key) is None:
            if lim is not None and key:
                lim.failed(address, key)
            body = render_template("login.html", next=target, error="That API key is not valid.")
            return Response(body, status=401, mimetype="text/html")
    except Problem as limited:  # too many failures: say so on the page, and when to try again
        wait = limited.headers.get("Retry-After", "60")
        body = render_template("login.html", next=target,
                               error=f"Too many failed attempts. Please wait {wait} seconds, then try again.")
        return Response(body, status=429, mimetype="text/html", headers={"Retry-After": wait})
    return redirect(target, 303)


@bp.post("/logout")
@requires(Role.VIEWER)
def logout() -> BaseResponse:
    """End the session."""
    session.logout()
    return redirect(url_for("ui.login"), 303)


def _age(ms: int | None, now_ms: int) -> float | None:
    return None if ms is None else max(0.0, (now_ms - ms) / 1000)


def _buckets(minutes: list[dict[str, int]], field: str, size: int) -> list[int]:
    """Sums of ``field`` over consecutive groups of ``size`` minutes."""
    return [sum(m.get(field, 0) for m in minutes[i : i + size]) for i in range(0, len(minutes), size)]


def _rates(done: list[int], failed: list[int]) -> list[float]:
    return [f / d if d else 0.0 for d, f in zip(done, failed, strict=True)]


def task_stats(queues: list[str]) -> list[dict[str, Any]]:
    """Per task (and queue): finished and failed in the last hour and day, with sparklines."""
    store = state().store
    rows: list[dict[str, Any]] = []
    for queue in queues:
        day = store.history(queue, 1440)
        hour = day[-60:]
        tasks = sorted({f.split(":", 1)[1] for m in day for f in m if f.startswith("finished:")})
        for task in tasks:
            done_h, failed_h = _buckets(hour, f"finished:{task}", 5), _buckets(hour, f"failed:{task}", 5)
            done_d, failed_d = _buckets(day, f"finished:{task}", 60), _buckets(day, f"failed:{task}", 60)
            finished, failed = sum(done_h), sum(failed_h)
            rows.append({
                "task": task, "queue": queue, "finished_hour": finished, "failed_hour": failed,
                "run_time": histogram.run_time(day, task),
                "finished_day": sum(done_d), "failed_day": sum(failed_d),
                "failure_rate": failed / finished if finished else 0.0,
                "spark_done_hour": sparkline(done_h, f"{task}: finished per 5 minutes, last hour"),
                "spark_fail_hour": sparkline(_rates(done_h, failed_h), f"{task}: failure rate per 5 minutes, last "
                                             "hour", maximum=1.0),
                "spark_done_day": sparkline(done_d, f"{task}: finished per hour, last day"),
                "spark_fail_day": sparkline(_rates(done_d, failed_d), f"{task}: failure rate per hour, last day",
                                            maximum=1.0),
            })
    return rows


SORTS = {"task": lambda r: (r["task"], r["queue"]), "failure": lambda r: (-r["failure_rate"], r["task"]),
         "throughput": lambda r: (-r["finished_hour"], r["task"])}


@bp.get("/")
@requires(Role.VIEWER)
def overview() -> str:
    """Per queue: waiting, delayed, running, oldest waiting age, paused, workers; per task: throughput and
    failure-rate sparklines of the last hour and day (``?sort=failure`` puts the worst first)."""
    store = state().store
    sort = request.args.get("sort", "task")
    if sort not in SORTS:
        raise validation_problem([{"path": "/query/sort", "message": f"must be one of {', '.join(SORTS)}"}],
                                 status=400)
    names = store.queue_names()
    queues = [store.queue_stats(name) for name in names]
    tasks = sorted(task_stats(names), key=SORTS[sort])
    failed = int(store.redis.zcard(store.keys.failed))
    return render_template("overview.html", queues=queues, tasks=tasks, sort=sort, failed=failed)


@bp.get("/workers")
@requires(Role.VIEWER)
def workers() -> str:
    """Every worker: queues, concurrency, what each slot runs, last heartbeat, stopping. A tenant sees the
    ids of its own running jobs only; other tenants' are counted, never named."""
    now_ms = int(time.time() * 1000)
    store = state().store
    found = store.workers()
    running = [str(j) for w in found for j in (w.status or {}).get("jobs") or []]
    owner_filter = current_principal().owner_filter(None)
    visible = {j.id for j in store.get_many(running) if owner_filter is None or j.owner == owner_filter}
    rows = []
    for w in found:
        status: Mapping[str, Any] = w.status or {}
        queues = status.get("queues") or ([status["queue"]] if status.get("queue") else [])
        jobs = [str(j) for j in status.get("jobs") or []]
        rows.append({
            "id": w.id,
            "alive": w.status is not None,
            "queues": ", ".join(str(q) for q in queues),
            "concurrency": status.get("concurrency"),
            "busy": status.get("busy"),
            "jobs": [j for j in jobs if j in visible],
            "hidden_jobs": sum(1 for j in jobs if j not in visible),
            "tasks": ", ".join(str(t) for t in status.get("tasks") or []),
            "pid": status.get("pid"),
            "stopping": bool(status.get("stopping")),
            "last_seen_ms": w.last_seen_ms,
            "age": _age(w.last_seen_ms, now_ms),
        })
    return render_template("workers.html", workers=rows)


@bp.get("/tasks")
@requires(Role.VIEWER)
def tasks() -> str:
    """The task catalogue, each with a "run" form generated from its params schema."""
    store = state().store
    catalogue = store.tasks()
    queues = store.queue_names()
    views = [{**_task_view(t.to_dict()), "run_time": store.task_run_time(t.name, queues)} for t in catalogue.values()]
    return render_template("tasks.html", tasks=views, errors={}, values={})


def _task_view(info: Mapping[str, Any]) -> dict[str, Any]:
    """A task with the form fields its schema gives (simple top-level properties; the rest as JSON)."""
    schema = info.get("params_schema") or {}
    schema_json = orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()
    problem = info.get("problem") or schema_problem(schema if isinstance(schema, Mapping) else {})
    if problem:  # a broken published schema gives no form fields (a submission answers 503 naming it)
        return {**info, "problem": problem, "fields": [], "schema_json": schema_json}
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    required = set(schema.get("required") or []) if isinstance(schema, Mapping) else set()
    defaults = info.get("defaults") or {}
    fields = []
    for name, prop in (props or {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        kind = prop.get("type")
        default = defaults.get(name, prop.get("default"))
        if "enum" in prop:
            widget = "select"
        elif kind in ("integer", "number"):
            widget = kind
        elif kind == "boolean":
            widget = "checkbox"
        elif kind == "string":
            widget = "text"
        else:
            widget = "json"
        fields.append({
            "name": name,
            "widget": widget,
            "required": name in required,
            "description": str(prop.get("description") or ""),
            "enum": [orjson.dumps(v).decode() if not isinstance(v, str) else v for v in prop.get("enum", [])],
            "default": "" if default is None else (
                default if isinstance(default, str) else orjson.dumps(default).decode()),
            "min": prop.get("minimum"),
            "max": prop.get("maximum"),
        })
    return {**info, "fields": fields, "schema_json": schema_json}


def _form_params(task: Mapping[str, Any]) -> dict[str, Any]:
    """The params a "run task" form describes. Values that do not parse are passed on as text, so the
    schema check reports them exactly as ``POST /jobs`` would."""
    raw_json = request.form.get("params_json", "").strip()
    if raw_json:
        try:
            value = orjson.loads(raw_json)
        except orjson.JSONDecodeError as e:
            raise Problem(400, "Bad Request", f"params JSON is not valid JSON: {e}", slug="malformed-json") from e
        if not isinstance(value, dict):
            raise Problem(422, "Validation failed", "params JSON must be an object", slug="validation-error",
                          errors=[{"path": "/params", "message": "must be of type object"}])
        return value
    params: dict[str, Any] = {}
    for f in task["fields"]:
        name = f["name"]
        if f["widget"] == "checkbox":
            params[name] = request.form.get(f"p.{name}") == "on"
            continue
        text = request.form.get(f"p.{name}", "")
        if text == "":
            continue
        if f["widget"] == "text":
            params[name] = text
        else:
            try:
                params[name] = orjson.loads(text)
            except orjson.JSONDecodeError:
                params[name] = text
    return params


def _number(name: str) -> Any:
    text = request.form.get(name, "").strip()
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # the schema check names the field


@bp.post("/tasks/<name>/run")
@requires(Role.OPERATOR)
def run_task(name: str) -> BaseResponse | Response:
    """Submit a job from the "run task" form, validated by the same code as ``POST /jobs``."""
    principal = current_principal()
    if any(len(v) > _MAX_FORM_FIELD for v in request.form.values()):
        raise Problem(413, "Request Entity Too Large", "a form field is larger than 64 KiB")
    info = state().store.tasks().get(name)
    if info is None:
        raise Problem(404, "Not Found", f"no task named {name!r}", slug="task-not-found")
    task = _task_view(info.to_dict())
    body: dict[str, Any] = {"task": name, "params": _form_params(task)}
    for option in ("max_attempts", "timeout", "delay"):
        value = _number(option)
        if value is not None:
            body[option] = value
    try:
        job, _ = create_job(body, None, principal.tenant)
    except Problem as problem:
        if problem.status != 422 or not wants_html():
            raise
        page = render_template("tasks.html", tasks=[task], errors={name: problem.errors or []},
                               values={name: dict(request.form)})
        return Response(page, status=422, mimetype="text/html")
    return redirect(url_for("ui.job", job_id=job.id), 303)
