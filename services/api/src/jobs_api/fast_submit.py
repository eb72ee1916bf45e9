"""The WSGI fast path of ``POST /jobs``: the common submission answered in one function, without Flask's
request dispatch.

``create_app()`` puts :class:`FastSubmit` in front of the Flask app (inside ``ProxyFix`` when
``JOBS_TRUSTED_PROXY_HOPS`` is set), so gunicorn, ``make run`` and the test client all go through it;
``JOBS_FAST_SUBMIT=0`` leaves it out (Flask alone answers, as before), and so does tracing (the Flask
instrumentation makes the request span). Why: a submission spent about as much CPU in Flask's dispatch,
our request hooks and werkzeug's request and response objects as in its own work (bench/analysis.md,
profiles 8 and 12). ``Prefer: wait`` submissions (issue 16's HTTP round trip) are answered here too: the
API's CPU per held submission halves (profile 23).

The answer is the very one the Flask view gives, because it is made by the same code: the bearer-key check
(:meth:`Authenticator.principal_of`, also behind the blueprints' guard), the role check, the JSON body
parse, the ``Idempotency-Key`` check, the ``Prefer`` header's wait (:func:`jobs_api.prefer.preferred_wait`),
:func:`jobs_api.jobs.submission_answer` (:func:`jobs_api.jobs.create_job`: validation, the task's params
schema, callback URL, caps, the enqueue through the store's group commit, the submission counters and log
line; then the 202, or with ``Prefer: wait`` the request held until the job ends and its 200),
:func:`jobs_api.problems.handled_problem` for every error (the problem+json the error handlers send), the
request id, the headers the after-request hook adds and the latency histogram. gunicorn writes the access
log line from the same status and headers. ``tests/api/test_fast_submit.py`` sends a corpus of submissions
(held ones too) to an app with and without this path and compares status, headers, bodies, metrics and log
lines.

Anything unusual goes to the Flask app untouched, before anything is read or counted: another method or
path, a query string, a cookie, ``Expect``, a chunked body or no ``Content-Length``, a body over the limit
(413), a media type that is not JSON (415). A body shorter than its ``Content-Length`` (client gone) or one
with ``depends_on`` (a workflow node) is handed to Flask with the bytes already read.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, g
from werkzeug.http import HTTP_STATUS_CODES, parse_options_header

from jobs_api.auth import check_role, required_role
from jobs_api.jobs import submission_answer
from jobs_api.logs import request_id
from jobs_api.metrics import observe_latency
from jobs_api.prefer import preferred_wait
from jobs_api.problems import PROBLEM_MEDIA_TYPE, handled_problem
from jobs_api.ratelimit import address_of
from jobs_api.state import EXTENSION, State
from jobs_api.validation import checked_idempotency_key, is_json, parse_json

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PATH = "/jobs"
#: Request headers that send a POST /jobs to Flask: the console's session, and bodies this path does not
#: read itself (100-continue, chunked).
_TO_FLASK = ("HTTP_COOKIE", "HTTP_EXPECT", "HTTP_TRANSFER_ENCODING")
_MAX_MEDIA_TYPES = 64
_SHORT = object()


def _status_line(code: int) -> str:
    # werkzeug's wording of a status code (Response._clean_status)
    return f"{code} {HTTP_STATUS_CODES.get(code, 'unknown').upper()}"


class FastSubmit:
    """WSGI middleware answering ``POST /jobs`` itself, everything else by ``flask_wsgi``."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp) -> None:
        self.app = app
        self.flask = flask_wsgi
        self.state: State = app.extensions[EXTENSION]
        with app.app_context():
            self.role = required_role("jobs.submit")
        #: Content-Type header -> media type as werkzeug parses it (clients send a handful of spellings)
        self._media_types: dict[str, str] = {}

    def _media_type(self, header: str) -> str:
        found = self._media_types.get(header)
        if found is None:
            found = parse_options_header(header)[0].lower()  # what werkzeug's Request.mimetype is
            if len(self._media_types) < _MAX_MEDIA_TYPES:
                self._media_types[header] = found
        return found

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST"
                or environ.get("QUERY_STRING") or environ.get("SCRIPT_NAME")
                or any(name in environ for name in _TO_FLASK)):
            return self.flask(environ, start_response)
        raw_length = environ.get("CONTENT_LENGTH") or ""
        if not (raw_length.isascii() and raw_length.isdigit()):
            return self.flask(environ, start_response)
        length = int(raw_length)
        limit = self.app.config["MAX_CONTENT_LENGTH"]
        if (limit is not None and length > limit) or not is_json(self._media_type(environ.get("CONTENT_TYPE", ""))):
            return self.flask(environ, start_response)
        return self._submit(environ, start_response, length)

    def _submit(self, environ: dict[str, Any], start_response: StartResponse, length: int) -> Iterable[bytes]:
        start = time.perf_counter()
        rid = request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        replay: bytes | None = None
        status, media_type, body = 0, "", b""
        headers: Mapping[str, str] = {}
        ctx = self.app.app_context()  # state(), the limiter and the log filter's request id live there
        ctx.push()
        try:
            g.start, g.request_id = start, rid
            try:
                principal = self.state.auth.principal_of(environ.get("HTTP_AUTHORIZATION", ""),
                                                         lambda: address_of(environ))
                check_role(principal, self.role)
                data = environ["wsgi.input"].read(length) if length else b""
                submission = parse_json(data) if len(data) == length else _SHORT
                if submission is _SHORT or (isinstance(submission, dict) and submission.get("depends_on")):
                    replay = data  # a short body (werkzeug's error), or a workflow node: Flask's own
                else:
                    g.principal, g.tenant = principal, principal.tenant
                    key = checked_idempotency_key(environ.get("HTTP_IDEMPOTENCY_KEY"))
                    prefers = environ.get("HTTP_PREFER")  # repeated headers arrive joined with commas
                    wait = 0.0 if prefers is None else preferred_wait(
                        (prefers,), self.state.settings.prefer_wait_max_seconds)
                    body, status, headers = submission_answer(submission, key, principal.tenant, wait)
                    media_type = "application/json"
            except Exception as e:  # exactly what the app's error handlers answer (a 500 logs its traceback)
                problem = handled_problem(e, PATH, "POST")
                status, media_type, headers = problem.status, PROBLEM_MEDIA_TYPE, problem.headers
                body = problem.body(PATH)
        finally:
            ctx.pop()
        if replay is not None:
            environ["wsgi.input"] = io.BytesIO(replay)
            return self.flask(environ, start_response)
        # the headers werkzeug's Response sets, the view's, then what the app's after-request hook adds
        out = [("Content-Type", media_type), ("Content-Length", str(len(body))), *headers.items(),
               ("X-Request-ID", rid)]
        named = {name.lower() for name in headers}
        if "x-content-type-options" not in named:
            out.append(("X-Content-Type-Options", "nosniff"))
        if "cache-control" not in named:  # PATH is one of app.NO_STORE_PATHS
            out.append(("Cache-Control", "no-store"))
        observe_latency("POST", PATH, status, start)  # Flask's route label: the rule "/jobs"
        start_response(_status_line(status), out)
        return [body]
