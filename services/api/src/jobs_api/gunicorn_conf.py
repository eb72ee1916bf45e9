"""gunicorn settings for the Jobs API (``services/api/gunicorn.conf.py`` re-exports this module).

Shipped inside the package so an installed ``jobs-api`` finds it (``-c python:jobs_api.gunicorn_conf``).

- bind ``JOBS_BIND`` (default 127.0.0.1:8000; 0.0.0.0:8000 in the container), ``WEB_CONCURRENCY``
  processes (default 2) of ``JOBS_API_THREADS`` threads (default 8): ``gthread`` workers, so a long-poll
  (``GET /jobs/<id>?wait=60``) holds a thread, not a whole process; the class is gthread with a thread
  staying ~2 ms on a kept-alive connection for its next request (``jobs_api.gunicorn_worker``; plain
  gthread again with ``GUNICORN_CMD_ARGS="--worker-class gthread"``).
- graceful timeout ``JOBS_API_GRACEFUL_TIMEOUT`` (default 30 s): on SIGTERM, requests in flight finish.
- access log and error log as JSON lines (access to stdout, errors to stderr).
- ``PROMETHEUS_MULTIPROC_DIR``: created here (a fresh temporary directory, removed at exit) unless
  already set (e.g. a Kubernetes emptyDir, whose stale files are then cleared), *before* any worker
  imports prometheus_client, so ``/metrics`` aggregates every worker.

Any other gunicorn setting can be given through ``GUNICORN_CMD_ARGS``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import sys
import tempfile
from typing import Any, NoReturn

from jobs_core.config import Settings
from jobs_core.errors import ConfigError


def _config_error(message: str) -> NoReturn:
    """A clear one-line message and exit 2 instead of a traceback."""
    sys.stderr.write(f"jobs-api: configuration error: {message}\n")
    sys.exit(2)


try:
    _settings = Settings.from_env()
    from jobs_api.console.session import ConsoleConfig  # imports no metrics code (see jobs_api.__init__)

    ConsoleConfig.from_env()
except ConfigError as _e:
    _config_error(str(_e))


def _prepare_metrics_dir() -> str | None:
    """Point PROMETHEUS_MULTIPROC_DIR at an empty directory; returns it when we created it."""
    existing = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if existing:
        try:
            os.makedirs(existing, exist_ok=True)
            names = os.listdir(existing)
            if not os.access(existing, os.W_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as e:
            _config_error(f"PROMETHEUS_MULTIPROC_DIR: cannot use {existing} as a writable directory: {e.strerror}")
        for name in names:  # samples of a previous run would be added to ours
            if name.endswith(".db"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(existing, name))
        return None
    try:
        created = tempfile.mkdtemp(prefix="jobs-api-metrics-")
    except OSError as e:
        _config_error(
            f"cannot create a metrics directory in {tempfile.gettempdir()} ({e.strerror}); mount a "
            "writable /tmp (emptyDir) or set PROMETHEUS_MULTIPROC_DIR to a writable directory"
        )
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    return created


_owned_metrics_dir = _prepare_metrics_dir()

wsgi_app = "jobs_api.app:create_app()"
bind = [_settings.bind]
workers = _settings.web_concurrency
worker_class = "jobs_api.gunicorn_worker.LingeringThreadWorker"  # gthread + keep-alive linger
threads = _settings.api_threads
graceful_timeout = _settings.api_graceful_timeout
timeout = 30  # a worker whose main loop is stuck this long is restarted (threads may run longer)
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = _settings.log_level.lower()
logger_class = "jobs_api.logs.GunicornLogger"
# The heartbeat file lives in memory: works with a read-only root filesystem and does not stall on disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
proc_name = "jobs-api"
# No control socket (gunicorn >= 25): we do not use gunicornc, its default path ($HOME/.gunicorn/gunicorn.ctl)
# is shared by every instance on a host (each one unlinks the other's, and the first to stop removes it),
# and its asyncio thread runs in the master while it forks replacements for crashed workers.
control_socket_disable = True
# Limits on request line and headers (defaults 4094 / 100 / 8190) stay; the body limit is
# JOBS_MAX_BODY_BYTES, enforced by the app.


def when_ready(server: Any) -> None:
    """In the master, before the first workers are forked: import prometheus_client's multiprocess support,
    which ``child_exit`` needs. Imported at the first worker exit instead, it cost 0.13-0.22 s of every stop on a
    loaded host (bench/analysis.md, profile 34); imported here the workers inherit it (they import
    prometheus_client for the app anyway). PROMETHEUS_MULTIPROC_DIR is set by this module's import, so the
    library picks its multiprocess values as the workers' own import would."""
    from prometheus_client import multiprocess  # noqa: F401


def post_fork(server: Any, worker: Any) -> None:
    """Application logs as JSON lines, at JOBS_LOG_LEVEL (before the app is built, so its warnings are JSON too);
    gunicorn's own parse errors answered as problem+json."""
    from jobs_api import gunicorn_errors
    from jobs_api.logs import configure_logging

    configure_logging(_settings.log_level)
    gunicorn_errors.install()


def post_worker_init(worker: Any) -> None:
    """Let long-polls notice a stop signal (gunicorn's own handlers are in place by now); start the schedule
    ticker of this process (see jobs_api.background)."""
    from jobs_api import background
    from jobs_api.lifecycle import install_shutdown_hook

    install_shutdown_hook()
    background.start(worker.wsgi)


def worker_exit(server: Any, worker: Any) -> None:
    """In the exiting worker: hand back the console bulk actions it runs (their threads are daemons that
    would die mid-way; another process would then wait out their lease); then freeze the heap (see
    :func:`_skip_final_collection`)."""
    from jobs_api import console

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        console.hand_back_bulk_actions(app)
    _skip_final_collection()


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: tell prometheus_client so its live gauges stop counting."""
    from prometheus_client import multiprocess  # imported by when_ready already

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    """Remove the metrics directory we created; freeze the master's heap (see :func:`_skip_final_collection`)."""
    if _owned_metrics_dir:
        shutil.rmtree(_owned_metrics_dir, ignore_errors=True)
    _skip_final_collection()


def _skip_final_collection() -> None:
    """Move every object to the garbage collector's permanent generation just before the process exits.

    Why: the interpreter's final collections walk the whole heap — the app, Flask, the OpenAPI documents,
    jsonschema, redis-py — ~0.7-0.9 s of a stop in each worker and again in the master on a loaded host
    (bench/analysis.md, profile 34: an idle ``jobs-api`` took 1.4-3.7 s to exit after SIGTERM). Nothing
    depends on them: logs are flushed by ``logging.shutdown`` (an atexit handler, which still runs, as do the
    others: tracing's exporter flush), stdio by the interpreter, metrics are writes to shared memory maps,
    and the kernel closes sockets and files. Objects made after this (by the rest of the exit, or a request
    still running past the graceful timeout, which is joined at exit as before) are collected as usual.
    """
    gc.freeze()
