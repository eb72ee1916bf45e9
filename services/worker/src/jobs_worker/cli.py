"""``jobs-worker``: run a worker, or check that a running one is alive (the liveness probe)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from jobs_core import tracing
from jobs_core.config import Settings, parse_queues
from jobs_core.errors import ConfigError, TaskDefinitionError
from jobs_core.logs import setup_logging

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobs-worker", description="Run Jobs API jobs from Redis.")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run a worker (the default)")
    for p in (parser, run):
        p.add_argument("--concurrency", "-c", type=int, default=None,
                       help="slots (child processes) in this worker; default JOBS_CONCURRENCY or 1")
        p.add_argument("--burst", action="store_true", help="exit once the queues are empty")
        p.add_argument("--once", action="store_true",
                       help="claim one job, run it and exit (one job per pod, e.g. a KEDA ScaledJob); "
                       "with --burst, also exit when there is none")
        p.add_argument("--queues", default=None,
                       help="queues to consume in strict order, e.g. gpu,jobs (default JOBS_QUEUES, else JOBS_QUEUE)")
    check = sub.add_parser("check", help="exit 0 if this host's worker loop is alive (liveness probe)")
    check.add_argument("--max-age", type=float, default=60.0,
                       help="seconds since the loop last touched JOBS_WORKER_HEALTH_FILE (default 60)")
    sub.add_parser("tasks", help="list the published tasks: queue, live workers offering each, conflicts")
    retire = sub.add_parser("retire-task", help="drop a task from the catalogue now (its queued jobs stay)")
    retire.add_argument("name")
    return parser


def admin(settings: Settings, args: argparse.Namespace) -> int:
    """``tasks`` and ``retire-task``: catalogue administration straight on Redis."""
    from jobs_core.store import JobStore

    store = JobStore.from_settings(settings)
    if args.command == "retire-task":
        if not store.retire_task(args.name):
            print(f"jobs-worker: no task named {args.name!r} in the catalogue", file=sys.stderr)
            return 1
        print(f"retired {args.name}")
        return 0
    for name, status in store.task_statuses().items():
        conflict = f"  CONFLICT: offered on {', '.join(status.queue_conflict)}" if status.queue_conflict else ""
        print(f"{name}\tqueue={status.info.queue}\tworkers={status.workers}{conflict}")
    return 0


def check(settings: Settings, max_age: float) -> int:
    """0 when the health file was touched within ``max_age`` seconds, else 1."""
    try:
        touched = os.stat(settings.worker_health_file).st_mtime
    except OSError:
        print(f"unhealthy: {settings.worker_health_file} does not exist", file=sys.stderr)
        return 1
    if touched == NOT_SEEN:
        print("unhealthy: the worker is still starting (its loop has not run yet)", file=sys.stderr)
        return 1
    age = time.time() - touched
    if age > max_age:
        print(f"unhealthy: worker loop last seen {age:.0f}s ago", file=sys.stderr)
        return 1
    print(f"ok: worker loop seen {age:.1f}s ago")
    return 0


#: The health file's time until the worker's own start-up first touches it: ``check`` fails until then.
NOT_SEEN = 0.0


def _check_health_file(path: str) -> None:
    """The loop touches this file (what ``jobs-worker check`` reads): it must be writable from the start.

    It is left marked "not seen" (time 0), not fresh: start-up (task imports, the fork server, slot children)
    takes seconds on a busy machine, and a fresh file would pass the startup probe at once and hand over to
    liveness checks before the worker touches it again; so would a file left fresh by the previous container
    in the pod's emptyDir. The worker touches it itself once its slot children are ready (then while it waits
    for Redis, and every loop)."""
    # made aside and renamed into place: a file created at `path` is fresh until its time is set, and a
    # startup probe that ran in between passed before the worker had started (seen once in CI under load)
    aside = f"{path}.{os.getpid()}.new"
    try:
        with open(aside, "w"):
            os.utime(aside, (NOT_SEEN, NOT_SEEN))
        os.replace(aside, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(aside)
        raise ConfigError(f"JOBS_WORKER_HEALTH_FILE: cannot write {path}: {e.strerror}") from e


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jobs-worker`` command."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "check":
            return check(settings, args.max_age)
        if args.command in ("tasks", "retire-task"):
            return admin(settings, args)
        if args.concurrency is not None and args.concurrency < 1:
            raise ConfigError("--concurrency must be >= 1")
        if args.queues is not None:
            queues = parse_queues(args.queues, "--queues")
            if not queues:
                raise ConfigError("--queues: give at least one queue")
            default = os.environ.get("JOBS_QUEUE", "").strip() or queues[0]
            settings = settings.replace(queues=queues, queue=default)
        _check_health_file(settings.worker_health_file)
        from jobs_worker.metrics import WorkerMetrics

        metrics = WorkerMetrics()
        if settings.worker_metrics_port:
            try:
                metrics.serve(settings.worker_metrics_port)
            except OSError as e:
                raise ConfigError(
                    f"JOBS_WORKER_METRICS_PORT: cannot listen on port {settings.worker_metrics_port}: {e.strerror}"
                ) from e
    except ConfigError as e:
        print(f"jobs-worker: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.log_level)
    tracing.setup("jobs-worker")  # off unless OTEL_* variables configure an exporter
    from jobs_worker.worker import Worker

    worker = Worker(settings, concurrency=args.concurrency, burst=args.burst, once=args.once, metrics=metrics)
    worker.install_signal_handlers()
    try:
        return worker.run()
    except TaskDefinitionError as e:  # a task module that does not import, or a task that is invalid
        print(f"jobs-worker: configuration error: JOBS_TASK_MODULES: {e}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        tracing.shutdown()


if __name__ == "__main__":
    sys.exit(main())
