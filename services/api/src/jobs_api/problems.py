"""RFC 9457 problem details: every error response is ``application/problem+json``.

Handlers are registered for our own :class:`Problem`, the typed errors of ``jobs_core``, every Werkzeug
``HTTPException`` (404, 405, 413, 415, ...), Redis outages (``503`` with ``Retry-After``) and, last, any
other exception: it is logged with its traceback and the client gets a generic ``500`` without one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson
import redis.exceptions
from flask import Flask, Response, request
from jobs_core.errors import (
    BackendUnavailable,
    IdempotencyConflict,
    IllegalTransition,
    JobNotFound,
    NotReplicated,
    QueueFull,
    ResultExpired,
    ResultNotReady,
)
from jobs_core.serialization import EncodingError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("jobs_api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
#: Seconds a client should wait before retrying after a 503 (Redis unreachable) or a 429 (queue full).
RETRY_AFTER_UNAVAILABLE = 2
RETRY_AFTER_QUEUE_FULL = 5

#: Redis failures that mean "the backend is unreachable or failing over", not a bug: 503, retry later.
REDIS_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (Redis loading its data after a restart)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica during failover
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.OutOfMemoryError,  # maxmemory reached with noeviction: full, not broken
    BackendUnavailable,
)


#: Characters allowed unescaped in a URI path (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def problem_type(slug: str) -> str:
    """The ``type`` URI of one of our problem kinds (a relative reference, see RFC 9457 section 3.1.1)."""
    return f"/problems/{slug}"


class Problem(Exception):
    """An error to be answered as problem details; raise it from any view."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        slug: str | None = None,
        errors: Sequence[Mapping[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = problem_type(slug) if slug else "about:blank"
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})
        self.extra = extra

    def to_dict(self, path: str | None = None) -> dict[str, Any]:
        """The problem details object; ``instance`` is ``path`` (default: the current request's path)."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        if path is None and request:
            path = request.path
        if path is not None:  # the path the problem occurred at (RFC 9457 ``instance``), as a URI reference
            body["instance"] = quote(path, safe=_PATH_SAFE)
        return body

    def body(self, path: str | None = None) -> bytes:
        """The problem details as the response body (``path``: see :meth:`to_dict`)."""
        return orjson.dumps(self.to_dict(path)) + b"\n"

    def response(self) -> Response:
        """This problem as a Flask response."""
        resp = Response(self.body(), status=self.status, mimetype=PROBLEM_MEDIA_TYPE)
        for name, value in self.headers.items():
            resp.headers[name] = value
        return resp


def validation_problem(errors: Sequence[Mapping[str, str]], detail: str | None = None, status: int = 422) -> Problem:
    """A 422 (or 400) listing every failing field as ``{"path": <JSON pointer>, "message": ...}``."""
    return Problem(
        status,
        "Validation failed" if status == 422 else "Bad request",
        detail or "; ".join(f"{e['path']}: {e['message']}" for e in errors) or "invalid request",
        slug="validation-error",
        errors=errors,
    )


def not_found(job_id: str) -> Problem:
    """404 for a job that does not exist, is malformed, or belongs to another tenant (indistinguishable)."""
    return Problem(404, "Not Found", f"no job with id {job_id!r}", slug="job-not-found")


def service_unavailable(
    detail: str = "the job store (Redis) is unreachable; retry later", slug: str = "backend-unavailable"
) -> Problem:
    """503 with Retry-After."""
    return Problem(
        503,
        "Service Unavailable",
        detail,
        slug=slug,
        headers={"Retry-After": str(RETRY_AFTER_UNAVAILABLE)},
    )


def task_unavailable(name: str, reason: str) -> Problem:
    """503 for a task whose published definition cannot be used (fixed when its workers republish it)."""
    detail = f"task {name!r} cannot take jobs: {reason}; fix the task and restart its workers"
    return service_unavailable(detail, slug="task-unavailable")


def _from_http_exception(e: HTTPException) -> Problem:
    code = e.code or 500
    detail = e.description or e.name
    headers: dict[str, str] = {}
    if code == 405:
        valid = getattr(e, "valid_methods", None)
        if valid:
            headers["Allow"] = ", ".join(sorted(valid))
    if code == 413:
        detail = "the request body is larger than the limit (JOBS_MAX_BODY_BYTES)"
    if code == 404:
        detail = f"no resource at {request.path}"
    return Problem(code, e.name, detail, headers=headers)


def _from_jobs_error(e: Exception) -> Problem:
    if isinstance(e, JobNotFound):
        return not_found(e.job_id)
    if isinstance(e, ResultNotReady):
        return Problem(
            409,
            "Conflict",
            f"job {e.job_id} has no result: its status is {e.status}",
            slug="result-not-ready",
            job_status=e.status,
        )
    if isinstance(e, ResultExpired):
        return Problem(410, "Gone", str(e), slug="result-expired")
    if isinstance(e, IllegalTransition):
        return Problem(
            409,
            "Conflict",
            f"job {e.job_id} is {e.current}: it cannot become {e.target}",
            slug="illegal-transition",
            job_status=e.current,
        )
    if isinstance(e, QueueFull):
        return Problem(
            429,
            "Too Many Requests",
            f"too many pending jobs ({e.scope} limit {e.limit}); retry later",
            slug="queue-full",
            headers={"Retry-After": str(RETRY_AFTER_QUEUE_FULL)},
            scope=e.scope,
            limit=e.limit,
        )
    if isinstance(e, EncodingError):
        # valid JSON the store cannot encode, e.g. params nested deeper than orjson's limit of 254 levels
        return validation_problem([{"path": "/params", "message": f"cannot be stored as JSON: {e}"}])
    if isinstance(e, IdempotencyConflict):
        return validation_problem(
            [{"path": "/", "message": "this Idempotency-Key was used with a different request body"}],
            detail=f"Idempotency-Key {e.key!r} was already used for a different request (job {e.job_id})",
        )
    raise e  # not ours to map: the last-resort handler answers it


def problem_for(e: Exception) -> Problem:
    """The problem an error raised by a view is answered with (what the handlers below send)."""
    if isinstance(e, Problem):
        return e
    if isinstance(e, HTTPException):
        return _from_http_exception(e)
    if isinstance(e, REDIS_UNAVAILABLE):
        log.warning("redis unavailable: %s", type(e).__name__, extra={"path": request.path})
        if isinstance(e, redis.exceptions.OutOfMemoryError):
            return service_unavailable("the job store (Redis) is out of memory; retry later")
        return service_unavailable()
    try:
        return _from_jobs_error(e)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return Problem(500, "Internal Server Error", "an unexpected error occurred; it has been logged",
                       slug="internal-error")


def _unavailable_problem(e: Exception, path: str) -> Problem:
    log.warning("redis unavailable: %s", type(e).__name__, extra={"path": path})
    if isinstance(e, redis.exceptions.OutOfMemoryError):
        return service_unavailable("the job store (Redis) is out of memory; retry later")
    if isinstance(e, NotReplicated):
        return service_unavailable(
            f"{e}; it may or may not have been kept: repeat the request (with the same Idempotency-Key)"
        )
    return service_unavailable()


def _unhandled_problem(path: str, method: str) -> Problem:
    # The traceback goes to the log (for operators), never into the response.
    log.exception("unhandled error", extra={"path": path, "method": method})
    return Problem(500, "Internal Server Error", "an unexpected error occurred; it has been logged",
                   slug="internal-error")


_JOBS_ERRORS = (JobNotFound, ResultNotReady, ResultExpired, IllegalTransition, QueueFull, IdempotencyConflict,
                EncodingError)


def handled_problem(e: Exception, path: str, method: str) -> Problem:
    """The problem the handlers of :func:`register_error_handlers` answer ``e`` with, outside Flask's
    dispatch (the WSGI fast path of ``POST /jobs``); call it in the ``except`` block (a 500 logs the
    traceback)."""
    if isinstance(e, Problem):
        return e
    if isinstance(e, HTTPException):
        return _from_http_exception(e)
    if isinstance(e, REDIS_UNAVAILABLE):
        return _unavailable_problem(e, path)
    if isinstance(e, _JOBS_ERRORS):
        return _from_jobs_error(e)
    return _unhandled_problem(path, method)


def register_error_handlers(app: Flask) -> None:
    """Answer every error raised while handling a request with problem details."""

    @app.errorhandler(Problem)
    def _problem(e: Problem) -> Response:
        return e.response()

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response:
        return _from_http_exception(e).response()

    for exc in REDIS_UNAVAILABLE:

        @app.errorhandler(exc)
        def _unavailable(e: Exception) -> Response:
            return _unavailable_problem(e, request.path).response()

    for exc in _JOBS_ERRORS:

        @app.errorhandler(exc)
        def _jobs(e: Exception) -> Response:
            return _from_jobs_error(e).response()

    @app.errorhandler(Exception)
    def _last_resort(e: Exception) -> Response:
        return _unhandled_problem(request.path, request.method).response()
