"""The WSGI application factory: ``create_app(config=None)``."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request
from jobs_core import tracing
from jobs_core.config import Settings

from jobs_api import (
    audit,
    background,
    console,
    docs,
    events,
    health,
    jobs,
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

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


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
        from werkzeug.middleware.proxy_fix import ProxyFix

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
    if tracing.setup("jobs-api"):  # off unless OTEL_* variables configure an exporter
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        # probes and scrapes are not traced unless OTEL_PYTHON_FLASK_EXCLUDED_URLS says otherwise
        excluded = os.environ.get("OTEL_PYTHON_FLASK_EXCLUDED_URLS", "healthz,readyz,metrics")
        FlaskInstrumentor().instrument_app(app, excluded_urls=excluded)  # type: ignore[no-untyped-call]

    @app.before_request
    def _start() -> None:
        g.start = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers["X-Request-ID"] = g.get("request_id", "")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith(("/jobs", "/tasks", "/queues", "/schedules", "/workflows")):
            resp.headers.setdefault("Cache-Control", "no-store")
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        start = g.get("start")
        if start is not None:
            # labels come from a bounded set: no client can mint new series with odd methods or paths
            method = request.method if request.method in _METHODS else "other"
            metrics.REQUEST_LATENCY.labels(method, route, str(resp.status_code)).observe(
                time.perf_counter() - start
            )
        return resp

    return app
