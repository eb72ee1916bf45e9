"""The WSGI application factory: ``create_app(config=None)``."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from jobs_core import tracing
from jobs_core.config import Settings
from werkzeug.middleware.proxy_fix import ProxyFix

from jobs_api import (
    audit,
    background,
    console,
    docs,
    events,
    health,
    jobs,
    logs,
    metrics,
    queues,
    ratelimit,
    schedules,
    tasks,
    webhooks,
    workflows,
)
from jobs_api.auth import Authenticator
from jobs_api.problems import register_error_handlers
from jobs_api.state import EXTENSION, State

log = logging.getLogger("jobs_api")



def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the Flask app.

    ``config`` may hold Flask settings plus two of ours (both optional, mainly for tests):
    ``JOBS_SETTINGS`` (a :class:`~jobs_core.config.Settings`; default ``Settings.from_env()``) and
    ``JOBS_STORE`` (a ready ``JobStore``; default one built from the settings); and ``JOBS_CONSOLE`` (a
    :class:`~jobs_api.console.session.ConsoleConfig`; default from the environment).
    """
    config = dict(config or {})
    settings: Settings = config.pop("JOBS_SETTINGS", None) or Settings.from_env()
    store = config.pop("JOBS_STORE", None)
    if store is None:
        from jobs_core.store import JobStore

        store = JobStore.from_settings(settings)

    app = Flask("jobs_api")
    # Werkzeug answers 413 for bodies over this, before a view reads them (also for chunked bodies).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config.update(config)
    authenticator = Authenticator(settings.api_keys)
    app.extensions[EXTENSION] = State(settings=settings, store=store, auth=authenticator)
    if authenticator.enabled:
        app.extensions[ratelimit.EXTENSION] = ratelimit.AuthLimiter(settings.auth_failure_limit,
                                                                    settings.auth_failure_window_seconds)
    if settings.trusted_proxy_hops:  # the client address the limit and the audit log see
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops)  # type: ignore[method-assign]
    if not authenticator.enabled:
        log.warning(
            "authentication is OFF: JOBS_API_KEYS and JOBS_API_KEYS_FILE are unset, so anyone who reaches "
            "the API acts as the admin of tenant 'default' (submits, reads and cancels jobs, pauses queues)"
        )

    if settings.schedules_file:  # a bad file stops the start here, with a clear message
        app.extensions[background.DECLARED] = background.load_declared(settings.schedules_file)
    for blueprint in (jobs.bp, tasks.bp, queues.bp, schedules.bp, workflows.bp, webhooks.bp, health.bp, docs.bp,
                      events.bp):
        app.register_blueprint(blueprint)
    console.init_app(app)
    audit.init_app(app)
    register_error_handlers(app)
    traced = tracing.setup("jobs-api")
    if traced:  # off unless OTEL_* variables configure an exporter
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        # probes and scrapes are not traced unless OTEL_PYTHON_FLASK_EXCLUDED_URLS says otherwise
        excluded = os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "healthz,readyz,metrics")
        FlaskInstrumentor().instrument_app(app, excluded_urls=excluded)  # type: ignore[no-untyped-call]

    @app.before_request
    def _start() -> None:
        g.start = time.perf_counter()
        g.request_id = logs.request_id(request.headers.get("X-Request-ID", ""))

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith(NO_STORE_PATHS):
            resp.headers.setdefault("Cache-Control", "no-store")
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        start = g.get("start")
        if start is not None:
            metrics.observe_latency(request.method, route, resp.status_code, start)
        return resp

    # The fast path of POST /jobs sits inside ProxyFix (it sees the client address the limit must see) and
    # is left out when tracing is on (the Flask instrumentation makes the request span).
    if settings.fast_submit and not traced:
        from jobs_api.fast_submit import FastSubmit

        if isinstance(app.wsgi_app, ProxyFix):
            app.wsgi_app.app = FastSubmit(app, app.wsgi_app.app)
        else:
            app.wsgi_app = FastSubmit(app, app.wsgi_app)  # type: ignore[method-assign]
    return app


#: Responses under these paths are not cached (``Cache-Control: no-store`` unless the view set one).
NO_STORE_PATHS = ("/jobs", "/tasks", "/queues", "/schedules", "/workflows")


