"""Console job pages: the filtered job list, a job's detail, its live state, cancel and retry."""

from __future__ import annotations

import re
import shlex
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Response, redirect, render_template, request, url_for
from jobs_core.browse import JobFilter
from jobs_core.config import Role
from jobs_core.errors import ResultExpired
from jobs_core.model import Job, JobStatus, is_job_id
from jobs_core.webhook_view import pending_for_job
from werkzeug.wrappers import Response as BaseResponse

from jobs_api import openapi
from jobs_api.auth import requires
from jobs_api.console import bp
from jobs_api.console.session import current_principal
from jobs_api.jobs import job_body
from jobs_api.problems import not_found, validation_problem
from jobs_api.state import json_response, state
from jobs_api.validation import query_int

#: Characters of a params or result value shown on the job page; the full value is one link away.
PREVIEW_CHARS = 10_000
FILTER_FIELDS = ("status", "task", "queue", "tenant", "from", "to", "param", "value")
_PARAM_PATH = re.compile(r"^[A-Za-z0-9_\-]{1,64}(\.[A-Za-z0-9_\-]{1,64}){0,7}$")
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_MAX_CURSOR = 32
#: Attempt outcomes that were terminal transitions (each may have written webhook events).
TERMINAL_OUTCOMES = ("succeeded", "failed", "cancelled")


def _when(name: str, errors: list[dict[str, str]]) -> datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        errors.append({"path": f"/query/{name}", "message": "must be a date and time like 2026-01-31T13:45"})
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_filter() -> JobFilter:
    """The job filter in the query string (400 naming every bad field); the tenant only for admins."""
    errors: list[dict[str, str]] = []
    args = request.args
    status = None
    if args.get("status"):
        try:
            status = JobStatus(args["status"])
        except ValueError:
            errors.append({"path": "/query/status", "message": f"must be one of {', '.join(openapi.STATUSES)}"})
    for name in ("task", "queue", "tenant"):
        if args.get(name) and not _NAME.match(args[name]):
            errors.append({"path": f"/query/{name}", "message": "must be 1-200 letters, digits, '_', '.', '-'"})
    param = args.get("param", "").strip() or None
    value = args.get("value")
    if param is not None and not _PARAM_PATH.match(param):
        errors.append({"path": "/query/param", "message": "must be a field name or a dotted path like user.id"})
    if value is not None and len(value) > 500:
        errors.append({"path": "/query/value", "message": "at most 500 characters"})
    created_from, created_to = _when("from", errors), _when("to", errors)
    if errors:
        raise validation_problem(errors, status=400)
    principal = current_principal()
    return JobFilter(
        owner=principal.owner_filter(args.get("tenant")),
        status=status,
        task=args.get("task") or None,
        queue=args.get("queue") or None,
        created_from=created_from,
        created_to=created_to,
        param_path=param,
        param_value=(value or "") if param else None,
    )


def filter_query() -> dict[str, str]:
    """The filter fields of the current query string (links keep them; the cursor is left out)."""
    return {k: request.args[k] for k in FILTER_FIELDS if request.args.get(k)}


@bp.get("/jobs")
@requires(Role.VIEWER)
def jobs() -> BaseResponse | str:
    """Jobs matching the filters in the URL, newest first, a page at a time; ``?id=`` jumps to a job."""
    lookup = request.args.get("id", "").strip()
    if lookup:
        if not is_job_id(lookup):
            raise validation_problem([{"path": "/query/id", "message": "not a job id"}], status=400)
        return redirect(url_for("ui.job", job_id=lookup), 303)
    flt = parse_filter()
    cursor = request.args.get("cursor") or None
    if cursor is not None and (len(cursor) > _MAX_CURSOR or not (cursor.isascii() and cursor.isdigit())):
        raise validation_problem([{"path": "/query/cursor", "message": "not a cursor from a next link"}],
                                 status=400)
    limit = query_int("limit", openapi.DEFAULT_PAGE_SIZE, 1, openapi.MAX_PAGE_SIZE)
    page = state().store.search_jobs(flt, limit=limit, cursor=cursor)
    query = filter_query()
    next_url = url_for("ui.jobs") + "?" + urlencode({**query, "cursor": page.next_cursor}) if page.next_cursor else None
    return render_template("jobs.html", page=page, filter=flt, query=query, next_url=next_url,
                           statuses=openapi.STATUSES, first_page=cursor is None, limit=limit,
                           tasks=sorted(state().store.tasks()))


def _job(job_id: str) -> Job:
    if not is_job_id(job_id):
        raise not_found(job_id)
    return state().store.get(job_id, owner=current_principal().owner_filter(None))


def _pretty(value: Any) -> tuple[str, bool]:
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return (text[:PREVIEW_CHARS], True) if len(text) > PREVIEW_CHARS else (text, False)


def _result_preview(job: Job) -> dict[str, Any] | None:
    if job.status is not JobStatus.SUCCEEDED:
        return None
    try:
        result = state().store.get_result(job.id, owner=job.owner)
    except ResultExpired:
        return {"expired": True}
    if result.media_type == "application/json":
        try:
            text, cut = _pretty(orjson.loads(result.data))
        except orjson.JSONDecodeError:
            text, cut = result.data[:PREVIEW_CHARS].decode("utf-8", "replace"), len(result.data) > PREVIEW_CHARS
        return {"text": text, "cut": cut, "media_type": result.media_type, "size": len(result.data)}
    return {"text": None, "cut": True, "media_type": result.media_type, "size": len(result.data)}


def _copy_commands(job: Job) -> dict[str, str]:
    body: dict[str, Any] = {"task": job.task, "params": job.params, "max_attempts": job.max_attempts,
                            "timeout": job.timeout}
    base = request.host_url.rstrip("/")
    auth = " -H \"Authorization: Bearer $JOBS_API_KEY\"" if state().auth.enabled else ""
    curl = (f"curl -sS -X POST {shlex.quote(base + '/jobs')}{auth} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(orjson.dumps(body).decode())}")
    cli = (f"JOBS_URL={shlex.quote(base)} jobs submit {shlex.quote(job.task)} "
           f"--params {shlex.quote(orjson.dumps(job.params).decode())} --max-attempts {job.max_attempts} "
           f"--timeout {job.timeout:g}")
    return {"curl": curl, "cli": cli}


@bp.get("/jobs/<job_id>")
@requires(Role.VIEWER)
def job(job_id: str) -> str:
    """One job: state, live progress, params, result, error with traceback, actions, copy-as-command."""
    found = _job(job_id)
    params_text, params_cut = _pretty(found.params)
    attempts = state().store.attempt_log(found.id)
    return render_template("job.html", job=found, params_text=params_text, params_cut=params_cut,
                           result=_result_preview(found), commands=_copy_commands(found), attempts=attempts,
                           webhook=job_body(found).get("webhook"), owed=_owed_webhooks(found, attempts))


def _owed_webhooks(job: Job, attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The job's webhook events not delivered yet (new or retrying: failed attempts, next attempt), found
    near its terminal transitions (when it finished, and when earlier attempts ended so)."""
    ends = [int(a["end"]) for a in attempts if a.get("outcome") in TERMINAL_OUTCOMES and a.get("end")]
    if job.finished_at is not None:
        ends.append(int(job.finished_at.timestamp() * 1000))
    return [d.to_dict() for d in pending_for_job(state().store, job.id, ends)] if ends else []


@bp.get("/jobs/<job_id>/state")
@requires(Role.VIEWER)
def job_state(job_id: str) -> Response:
    """The job as ``GET /jobs/{id}`` shows it (the page polls this while the job runs)."""
    return json_response(job_body(_job(job_id)))


@bp.get("/jobs/<job_id>/params")
@requires(Role.VIEWER)
def job_params(job_id: str) -> Response:
    """The job's full params as JSON."""
    resp = Response(orjson.dumps(_job(job_id).params, option=orjson.OPT_INDENT_2), mimetype="application/json")
    resp.headers["Content-Disposition"] = "inline"
    return resp


@bp.get("/jobs/<job_id>/result")
@requires(Role.VIEWER)
def job_result(job_id: str) -> Response:
    """The job's full result in its media type (sandboxed: never run as a page of this origin)."""
    found = _job(job_id)
    result = state().store.get_result(found.id, owner=found.owner)
    resp = Response(result.data, content_type=result.media_type)
    resp.headers["Content-Security-Policy"] = "sandbox"
    return resp


@bp.post("/jobs/<job_id>/<any(cancel, retry):action>")
@requires(Role.OPERATOR)
def job_action(job_id: str, action: str) -> BaseResponse:
    """Cancel the job, or queue a failed or cancelled one again (operators and admins)."""
    found = _job(job_id)
    store = state().store
    (store.cancel if action == "cancel" else store.retry)(found.id, owner=found.owner)
    return redirect(url_for("ui.job", job_id=found.id), 303)
