"""``/jobs`` resource: submit, list, get (long-poll), result, cancel, retry."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Blueprint, Response, request
from jobs_core.config import Role
from jobs_core.errors import IdempotencyConflict, QueueFull
from jobs_core.model import DEFAULT_PRIORITY, Job, JobStatus, Submission, is_job_id
from jobs_core.serialization import EncodingError, dumps
from jobs_core.store import JobStore

from jobs_api import openapi, openapi_batch, prefer
from jobs_api.auth import current_principal, current_tenant, forbidden, job_owner, protect, requires
from jobs_api.lifecycle import SHUTTING_DOWN
from jobs_api.metrics import SUBMISSIONS, UNKNOWN_TASK_LABEL
from jobs_api.problems import REDIS_UNAVAILABLE, Problem, not_found, task_unavailable, validation_problem
from jobs_api.slots import held
from jobs_api.state import json_bytes, json_response, state
from jobs_api.validation import (
    FixedSchema,
    TaskSchemaError,
    idempotency_key,
    query_int,
    query_seconds,
    read_json_body,
    task_params_errors,
)
from jobs_api.webhooks import safe_url

log = logging.getLogger("jobs_api.jobs")
bp = Blueprint("jobs", __name__)
protect(bp)

_MAX_CURSOR = 512
#: Errors listed per invalid job of a batch (each invalid job is named at least once).
_ERRORS_PER_ITEM = 5
_T = TypeVar("_T")
_TENANT = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
#: ``GET /jobs?tenant=*``: every tenant's jobs (admin only).
ALL_TENANTS = "*"
#: Longest single wait on Redis within a long-poll: how fast a stopping process lets go of it.
WAIT_SLICE_SECONDS = 2.0


def job_body(job: Job) -> dict[str, Any]:
    """The public representation of a job: ``Job.to_dict()`` plus ``links``."""
    body = job.to_dict()
    body["tenant"] = job.owner
    body["links"] = {"self": f"/jobs/{job.id}", "result": f"/jobs/{job.id}/result"}
    return body


def _check_id(job_id: str) -> str:
    # Malformed ids are 404 without a Redis round trip (and never reach a key name).
    if not is_job_id(job_id):
        raise not_found(job_id)
    return job_id


class _Invalid(Exception):
    """One submission failed validation: its errors, and the task label and outcome to count it under."""

    def __init__(self, errors: list[dict[str, str]], label: str, outcome: str = "invalid") -> None:
        super().__init__(errors)
        self.errors, self.label, self.outcome = errors, label, outcome


@functools.cache
def _submit_schema() -> FixedSchema:
    return FixedSchema(openapi.submit_request_schema())


def _checked(body: Any, base: str = "", store: JobStore | None = None) -> Submission:
    """``body`` (one SubmitRequest) as a :class:`Submission` routed to its task's queue, the task's defaults
    applied; raises :class:`_Invalid` with JSON pointers under ``base``. ``store``: the app's (a batch
    looks it up once, not once per job)."""
    errors = _submit_schema().errors(body, base)
    if errors:
        raise _Invalid(errors, UNKNOWN_TASK_LABEL)
    name: str = body["task"]
    info = (store or state().store).task_info(name)  # cached catalogue: no Redis round trip per submission
    if info is None:
        message = f"unknown task {name!r} (GET /tasks lists the known ones)"
        raise _Invalid([{"path": f"{base}/task", "message": message}], UNKNOWN_TASK_LABEL, "unknown_task")
    params = {**info.defaults, **body.get("params", {})}
    try:
        errors = task_params_errors(info, params, f"{base}/params")
    except TaskSchemaError as e:  # what a worker published is broken: not the client's fault, nor a 500
        SUBMISSIONS.labels(name, "unavailable").inc()
        raise task_unavailable(name, str(e)) from e
    if errors:
        raise _Invalid(errors, name)
    max_attempts = body.get("max_attempts", info.max_attempts)
    timeout = body.get("timeout", info.timeout)
    return Submission(
        task=name,
        params=params,
        queue=info.queue or None,  # routed by the task: clients never name queues
        priority=int(body.get("priority", DEFAULT_PRIORITY)),
        max_attempts=int(max_attempts) if max_attempts is not None else None,
        timeout=float(timeout) if timeout is not None else None,
        delay=float(body.get("delay", 0.0)),
    )


def _count(tasks: Counter[str], outcome: str) -> None:
    for task, n in tasks.items():
        SUBMISSIONS.labels(task, outcome).inc(n)


def _enqueued(tasks: Counter[str], call: Callable[[], tuple[_T, bool]]) -> tuple[_T, bool]:
    """``call()`` (a store enqueue), its submissions (``tasks``: task -> jobs) counted by outcome."""
    try:
        result = call()
    except QueueFull:
        _count(tasks, "queue_full")
        raise
    except IdempotencyConflict:
        _count(tasks, "conflict")
        raise
    except REDIS_UNAVAILABLE:
        _count(tasks, "unavailable")
        raise
    _count(tasks, "accepted" if result[1] else "replayed")
    return result


@bp.post("/jobs")
@requires(Role.OPERATOR)
def submit() -> Response:
    """Validate, record and queue a job on its task's queue; ``202`` with ``Location``.

    With ``Prefer: wait=N`` the request is held until the job ends (``200`` with the finished job, see
    :mod:`jobs_api.prefer`) or N seconds pass (``202``), when a long-poll slot is free.
    """
    body = read_json_body()
    key = idempotency_key()
    wait = prefer.preferred_wait(request.headers.getlist("Prefer"), state().settings.prefer_wait_max_seconds)
    data, status, headers = submission_answer(body, key, current_tenant(), wait)
    resp = Response(data, status=status, mimetype="application/json")
    resp.headers.update(headers)
    return resp


def submission_answer(body: Any, key: str | None, owner: str, wait: float) -> tuple[bytes, int, dict[str, str]]:
    """Queue the submission ``body`` for ``owner`` (:func:`create_job`) and make its answer: the JSON body,
    status and headers (besides ``Content-Type``) of ``POST /jobs``. With ``wait`` > 0 (``Prefer: wait``) and a
    long-poll slot free, the request is held until the job ends or ``wait`` seconds pass (see
    :mod:`jobs_api.prefer`). The Flask view above and the WSGI fast path (``jobs_api.fast_submit``) both
    answer with this, so they cannot answer differently."""
    slots = held() if wait > 0 else None  # a held submission takes a long-poll slot, or is not held
    if slots is not None and not slots.acquire(blocking=False):
        slots = None
    try:
        job, created = create_job(body, key, owner, reply=slots is not None)
        answer, status, headers = submitted(job, created)
        if slots is None:
            return json_bytes(answer), status, headers
        try:
            job, result = prefer.wait_for_end(state().store, job, wait)
        except REDIS_UNAVAILABLE:  # the job is stored: say so (202), never an error a client would resubmit on
            log.warning("Prefer: wait ended early: Redis unavailable", extra=job_fields(job))
            result = None
    finally:
        if slots is not None:
            slots.release()
    headers.update(prefer.APPLIED)
    return prefer.finished_body(job_body(job), job, result), 200 if job.is_terminal else 202, headers


def submitted(job: Job, created: bool) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The body, status and headers of the answer to an accepted submission that is not held (the view
    above and the WSGI fast path, ``jobs_api.fast_submit``, both send these)."""
    headers = {"Location": f"/jobs/{job.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return job_body(job), 202, headers


def _callback_url(body: Any, path: str = "/callback_url") -> str | None:
    """The submission's ``callback_url`` (already a string by the schema) once judged safe, else 422."""
    url = body.get("callback_url") if isinstance(body, dict) else None
    return None if url is None else safe_url(url, path)


def create_job(body: Any, idempotency_key: str | None, owner: str, reply: bool = False) -> tuple[Job, bool]:
    """Validate a submission body exactly as ``POST /jobs`` does and queue it for ``owner`` on its task's queue.

    Raises a 422 :class:`Problem` listing every invalid field; the console's "run task" form calls this too,
    so a form submission and an API submission can never be judged differently. ``reply``: this thread
    waits for the job's end (``Prefer: wait``): it is stored with the thread's reply channel.
    """
    try:
        sub = _checked(body)
    except _Invalid as e:
        SUBMISSIONS.labels(e.label, e.outcome).inc()
        raise validation_problem(e.errors) from None
    callback = _callback_url(body)
    if body.get("depends_on"):  # waits for other jobs: created by the workflow script (see workflows.py)
        from jobs_api.workflows import submit_dependent

        return _enqueued(Counter({sub.task: 1}), lambda: submit_dependent(body, owner, callback, idempotency_key))
    st = state()
    job, created = _enqueued(
        Counter({sub.task: 1}),
        lambda: st.store.enqueue(
            sub.task,
            sub.params,
            queue=sub.queue,
            priority=sub.priority,
            owner=owner,
            max_attempts=sub.max_attempts,
            timeout=sub.timeout,
            delay=sub.delay,
            idempotency_key=idempotency_key,
            max_pending=st.settings.max_pending,
            max_pending_per_tenant=st.settings.max_pending_per_tenant,
            callback_url=callback,
            reply=reply,
        ),
    )
    if log.isEnabledFor(logging.INFO):  # its fields are not built for a line that is not written
        log.info("job submitted" if created else "job submission replayed", extra=job_fields(job))
    return job, created


@bp.post("/jobs/batch")
@requires(Role.OPERATOR)
def submit_batch() -> Response:
    """Validate every job of ``{"jobs": [...]}`` first, then queue all of them atomically, or none; ``202``."""
    body = read_json_body()
    key = idempotency_key()
    errors = _batch_schema().errors(body)
    if errors:
        SUBMISSIONS.labels(UNKNOWN_TASK_LABEL, "invalid").inc()
        raise validation_problem(errors)
    subs: list[Submission] = []
    bad: dict[int, list[dict[str, str]]] = {}
    st = state()
    for i, item in enumerate(body["jobs"]):
        base = f"/jobs/{i}"
        try:
            sub = _checked(item, base, st.store)
            if item.get("depends_on"):
                message = "not in a batch: submit jobs that wait for others with POST /workflows"
                raise _Invalid([{"path": f"{base}/depends_on", "message": message}], sub.task)
        except _Invalid as e:
            SUBMISSIONS.labels(e.label, e.outcome).inc()
            bad[i] = e.errors[:_ERRORS_PER_ITEM]
            continue
        subs.append(sub)
    if bad:
        raise _invalid_batch(body["jobs"], bad)
    callbacks = {item.get("callback_url") for item in body["jobs"]}  # all items valid: strings or None
    if len(callbacks) > 1:
        raise validation_problem([{"path": "/jobs", "message": "every job of a batch names the same callback_url, "
                                   "or none"}])
    callback = _callback_url(body["jobs"][0], "/jobs/0/callback_url")
    try:
        jobs, created = _enqueued(
            Counter(sub.task for sub in subs),
            lambda: st.store.enqueue_many(
                subs,
                owner=current_tenant(),
                idempotency_key=key,
                max_pending=st.settings.max_pending,
                max_pending_per_tenant=st.settings.max_pending_per_tenant,
                callback_url=callback,
            ),
        )
    except EncodingError:  # the store encodes each job's params once (not the API too): find which failed
        raise _invalid_batch(body["jobs"], {}) from None
    if log.isEnabledFor(logging.INFO):  # one line per job; their fields are not built when none is written
        for job in jobs:
            log.info("job submitted" if created else "job submission replayed", extra=job_fields(job))
    headers = {} if created else {"Idempotent-Replayed": "true"}
    return json_response({"jobs": [job_body(j) for j in jobs]}, 202, headers)


@functools.cache
def _batch_schema() -> FixedSchema:
    return FixedSchema(openapi_batch.batch_request_schema())


def _invalid_batch(items: list[Any], bad: dict[int, list[dict[str, str]]]) -> Problem:
    """The 422 naming every invalid job of a batch: ``bad`` (index -> errors) plus the schema-valid jobs
    whose params cannot be stored as JSON (nested too deep); only looked for here, off the happy path."""
    for i, item in enumerate(items):
        if i not in bad:
            try:
                dumps(item.get("params", {}))
            except EncodingError as e:
                SUBMISSIONS.labels(item["task"], "invalid").inc()
                bad[i] = [{"path": f"/jobs/{i}/params", "message": f"cannot be stored as JSON: {e}"}]
    order = sorted(bad)
    shown = ", ".join(map(str, order[:20])) + (", ..." if len(order) > 20 else "")
    problem = validation_problem(
        [e for i in order for e in bad[i]],
        detail=f"{len(order)} of {len(items)} jobs are invalid (items {shown}); nothing was queued",
    )
    problem.extra["invalid_items"] = order
    return problem


def job_fields(job: Job) -> dict[str, Any]:
    """Log fields naming a job (the worker logs the same names; ``trace_id`` comes from the request span
    when tracing is on), so one grep for the job id shows its story across the API and the workers."""
    return {"job": job.id, "task": job.task, "attempt": job.attempts, "queue": job.queue, "tenant": job.owner}


def _listed_tenant(asked: str | None) -> str | None:
    """Whose jobs ``GET /jobs`` lists: the caller's, or (admin only) ``?tenant=`` (None = every tenant)."""
    principal = current_principal()
    if asked is None or asked == principal.tenant:
        return principal.tenant
    if not principal.is_admin:
        raise forbidden("listing another tenant's jobs (?tenant=) needs the admin role")
    return None if asked == ALL_TENANTS else asked


@bp.get("/jobs")
@requires(Role.VIEWER)
def list_jobs() -> Response:
    """A page of the tenant's jobs, newest first, with an opaque ``next_cursor``."""
    errors: list[dict[str, str]] = []
    status_raw = request.args.get("status") or None
    status = None
    if status_raw is not None:
        try:
            status = JobStatus(status_raw)
        except ValueError:
            errors.append({"path": "/query/status", "message": f"must be one of {', '.join(openapi.STATUSES)}"})
    task = request.args.get("task") or None
    if task is not None and len(task) > openapi.MAX_TASK_NAME_LENGTH:
        errors.append({"path": "/query/task", "message": "too long"})
    cursor = request.args.get("cursor") or None
    if cursor is not None and len(cursor) > _MAX_CURSOR:
        errors.append({"path": "/query/cursor", "message": "not a cursor from next_cursor"})
    tenant = request.args.get("tenant") or None
    if tenant is not None and tenant != ALL_TENANTS and not _TENANT.match(tenant):
        errors.append({"path": "/query/tenant", "message": "must be a tenant name or '*'"})
    if errors:
        raise validation_problem(errors, status=400)
    limit = query_int("limit", openapi.DEFAULT_PAGE_SIZE, 1, openapi.MAX_PAGE_SIZE)
    try:
        page, next_cursor = state().store.list_jobs(
            owner=_listed_tenant(tenant), status=status, task=task, limit=limit, cursor=cursor
        )
    except ValueError as e:
        raise validation_problem(
            [{"path": "/query/cursor", "message": "not a cursor from next_cursor"}], status=400
        ) from e
    return json_response({"jobs": [job_body(j) for j in page], "next_cursor": next_cursor})


@bp.get("/jobs/<job_id>")
@requires(Role.VIEWER)
def get_job(job_id: str) -> Response:
    """The job; with ``?wait=N`` hold the request until it is terminal or N seconds pass.

    When the process already holds its share of long-polls, the job is answered as it is now, at once:
    the client asks again, exactly as when N seconds pass.
    """
    _check_id(job_id)
    wait = query_seconds("wait", openapi.MAX_WAIT_SECONDS)
    store = state().store
    job = store.get(job_id, owner=job_owner())
    if wait <= 0 or job.is_terminal:
        return json_response(job_body(job))
    slots = held()  # long-polls and event streams share a budget: two threads always stay free
    if not slots.acquire(blocking=False):
        return json_response(job_body(job))
    try:
        deadline = time.monotonic() + wait
        # Wait in slices so a stopping process answers within one slice (see lifecycle.py).
        while not job.is_terminal and not SHUTTING_DOWN.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            job = store.wait(job_id, min(remaining, WAIT_SLICE_SECONDS), owner=job_owner())
    finally:
        slots.release()
    return json_response(job_body(job))


@bp.get("/jobs/<job_id>/result")
@requires(Role.VIEWER)
def get_result(job_id: str) -> Response:
    """The result bytes in their media type; 409 while not succeeded, 410 once expired."""
    _check_id(job_id)
    result = state().store.get_result(job_id, owner=job_owner())
    resp = Response(result.data, status=200, content_type=result.media_type)
    # A result is data, not a page of this origin: never let a browser run it as one.
    resp.headers["Content-Security-Policy"] = "sandbox"
    return resp


@bp.delete("/jobs/<job_id>")
@requires(Role.OPERATOR)
def cancel(job_id: str) -> Response:
    """Cancel: queued -> 200 cancelled; running -> 202 cancel requested; terminal -> 409."""
    _check_id(job_id)
    job = state().store.cancel(job_id, owner=job_owner())
    log.info("job cancelled" if job.status is JobStatus.CANCELLED else "job cancel requested", extra=job_fields(job))
    return json_response(job_body(job), 200 if job.status is JobStatus.CANCELLED else 202)


@bp.post("/jobs/<job_id>/retry")
@requires(Role.OPERATOR)
def retry(job_id: str) -> Response:
    """Queue a failed or cancelled job again (202); 409 for any other status."""
    _check_id(job_id)
    job = state().store.retry(job_id, owner=job_owner())
    log.info("job queued again (retry)", extra=job_fields(job))
    return json_response(job_body(job), 202, {"Location": f"/jobs/{job.id}"})
