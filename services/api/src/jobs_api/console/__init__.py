"""The operators' web console at ``/ui``: server-rendered pages in the API process, on the API's own store.

No Node build step and no CDN: templates are Jinja, the one script and stylesheet are files of this package
(``static/``), sparklines are SVG drawn on the server. Pages are served with a strict Content-Security-Policy
(no inline script or style). See ``session.py`` for login, roles and CSRF.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Flask, Response, g, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.wrappers import Response as BaseResponse

from jobs_api.auth import forbidden, required_role
from jobs_api.console import session
from jobs_api.problems import Problem, problem_for

bp = Blueprint("ui", __name__, url_prefix="/ui", template_folder="templates", static_folder="static")

#: Everything a console page loads comes from this origin; no inline script or style at all.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_PUBLIC_ENDPOINTS = frozenset({"ui.login", "ui.static"})


def wants_html() -> bool:
    """Whether the client asked for HTML explicitly (a browser); anything else gets problem+json."""
    return any(mime == "text/html" for mime, _ in request.accept_mimetypes)


@bp.before_request
def _session() -> BaseResponse | None:
    if request.endpoint == "ui.static":
        return None
    session.load_session()
    if g.principal is None and request.endpoint not in _PUBLIC_ENDPOINTS:
        if request.method == "GET" and wants_html():
            return redirect(url_for("ui.login", next=request.full_path.rstrip("?")), 303)
        raise Problem(401, "Unauthorized", "log in to the console first (POST /ui/login)", slug="unauthorized")
    if request.method not in ("GET", "HEAD"):
        session.check_csrf()
    if request.endpoint not in _PUBLIC_ENDPOINTS:
        # the API's own role check: every view declares its least role with @requires; none = refused
        needed = required_role(request.endpoint or "")
        role = g.principal.role
        if needed is None:
            raise forbidden("this page declares no role, so nobody may use it")
        if not role.allows(needed):
            raise forbidden(f"this needs the {needed} role; you have the {role} role")
    return None


@bp.after_request
def _headers(resp: Response) -> Response:
    if request.endpoint != "ui.static":
        session.save_session(resp)
        resp.headers["Cache-Control"] = "no-store"
    resp.headers.setdefault("Content-Security-Policy", CSP)  # a result keeps its stricter "sandbox"
    resp.headers["Referrer-Policy"] = "same-origin"
    resp.headers.setdefault("X-Frame-Options", "DENY")
    return resp


@bp.errorhandler(Exception)
def _error(e: Exception) -> Response:
    problem = problem_for(e)
    if not wants_html():
        return problem.response()
    return _error_page(problem)


def _error_page(problem: Problem) -> Response:
    body = render_template("error.html", problem=problem)
    resp = Response(body, status=problem.status, mimetype="text/html")
    for name, value in problem.headers.items():
        resp.headers[name] = value
    return resp


def _routing_error(e: HTTPException) -> Response:
    """A ``/ui`` URL that names no console page (404) or not with this method (405): a browser gets the
    console's error page, as for any other console error (the blueprint's own handler never sees these:
    no view was matched); everything else the API's problem+json, as before."""
    problem = problem_for(e)
    if not (request.path == "/ui" or request.path.startswith("/ui/")) or not wants_html():
        return problem.response()
    resp = _error_page(problem)
    resp.headers.update({"Cache-Control": "no-store", "Content-Security-Policy": CSP,
                         "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"})
    return resp


@bp.app_template_filter("utc")
def _utc(value: datetime | int | float | None) -> Markup:
    """``<time>`` showing UTC; the script adds the reader's local time as a tooltip."""
    if value is None or value == "":
        return Markup("&ndash;")
    if not isinstance(value, datetime):
        value = datetime.fromtimestamp(float(value) / 1000, tz=UTC)
    iso = value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, text, text)


@bp.app_template_filter("duration")
def _duration(ms: float | None) -> str:
    """A run time in ms as short text (``850 ms``, ``1.2 s``, ``3.5 min``); a dash for none."""
    if ms is None:
        return "\u2013"
    if ms < 1000:
        return f"{ms:.3g} ms"
    return f"{ms / 1000:.3g} s" if ms < 60_000 else f"{ms / 60_000:.3g} min"


@bp.app_context_processor
def _globals() -> dict[str, Any]:
    return {
        "principal": g.get("principal"),
        "csrf_token": g.get("csrf", ""),
        "auth_enabled": _auth_enabled(),
    }


def _auth_enabled() -> bool:
    from jobs_api.state import state

    return state().auth.enabled


#: ``app.extensions`` key of the process's :class:`~jobs_core.bulk_store.BulkRunner`.
BULK_RUNNER = "jobs_console_bulk_runner"


def init_app(app: Flask) -> None:
    """Register the console (its settings come from the environment unless the app config has them) and
    create this process's bulk runner (its takeover loop starts with :func:`start_bulk_runner`)."""
    from jobs_core.bulk_store import BulkRunner

    from jobs_api.state import EXTENSION

    cfg = app.config.get("JOBS_CONSOLE") or session.ConsoleConfig.from_env()
    app.extensions[session.CONFIG] = cfg
    from jobs_api.lifecycle import SHUTTING_DOWN

    # a stopping process hands its running bulk actions back after their current chunk
    app.extensions[BULK_RUNNER] = BulkRunner(app.extensions[EXTENSION].store, cfg.bulk_rate,
                                             shutdown=SHUTTING_DOWN)
    from jobs_api.console import (  # noqa: F401  (routes register on import)
        audit_page,
        bulk,
        jobs_pages,
        pages,
        queues_page,
        schedules_page,
        webhooks_page,
    )

    app.register_blueprint(bp)
    for routing in (NotFound, MethodNotAllowed):  # more specific than the API's HTTPException handler
        app.register_error_handler(routing, _routing_error)


def start_bulk_runner(app: Flask) -> None:
    """Start the process's bulk runner loop: it takes over bulk actions whose API process died."""
    app.extensions[BULK_RUNNER].start()


def hand_back_bulk_actions(app: Flask) -> None:
    """The process is exiting: hand the bulk actions it runs back, so another process resumes them at once."""
    runner = app.extensions.get(BULK_RUNNER)
    if runner is not None:
        runner.hand_back()


__all__ = ["BULK_RUNNER", "CSP", "bp", "hand_back_bulk_actions", "init_app", "start_bulk_runner", "wants_html"]
