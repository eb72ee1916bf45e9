"""The long-lived child process of a worker slot: receives jobs over a pipe, runs them, replies.

The parent can kill it at any time (hard timeout, cancel, shutdown) and starts a new one; nothing the
child holds is needed to keep the job safe, since the job's state lives in Redis.
"""

from __future__ import annotations

import ctypes
import os
import signal
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from jobs_core.errors import JobCancelled, Reject, ResultNotJSON, Retry
from jobs_core.tracing import trace_id_of

from jobs_worker.child_finish import Finisher, FinishRecipe
from jobs_worker.pipe import JobMessage, receive_job, send_reply
from jobs_worker.results import encode_result, too_large
from jobs_worker.tasklog import TaskLogging
from jobs_worker.tasks import Context, load_task_modules

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ChildConfig:
    """What a slot's child needs from the worker's settings."""

    task_modules: tuple[str, ...]
    cwd: str
    log_level: str = "INFO"
    retry_backoff_max_seconds: float = 300.0
    max_result_bytes: int = 16 * 1024 * 1024  # JOBS_MAX_RESULT_BYTES: checked before a result is sent
    #: how this slot's child stores a flagged job's success itself (None: the worker finishes every job)
    finish: FinishRecipe | None = None


class ChildContext(Context):
    """The task's ``ctx`` inside the child: progress goes to the parent, cancel comes from a shared flag."""

    def __init__(self, conn: Connection, cancel_flag: Synchronized[int], job: JobMessage) -> None:
        super().__init__(job_id=job.job_id, task=job.task, attempt=job.attempt, max_attempts=job.max_attempts,
                         tenant=job.tenant, queue=job.queue, deadline=job.deadline)
        self._conn = conn
        self._cancel_flag = cancel_flag
        self.progress_sent = False  # the worker stores a job's last progress message before its outcome

    def _report_progress(self, fraction: float | None, message: str | None) -> None:
        self.progress_sent = True
        send_reply(self._conn, ("progress", fraction, message))

    def _cancel_requested(self) -> bool:
        return bool(self._cancel_flag.value)

    def dependency_results(self) -> dict[str, Any]:
        """The results of this job's succeeded dependencies (``depends_on``, workflows), by job id."""
        global _store
        if _store is None:  # the child's own connection, made on first use (settings: the worker's env)
            from jobs_core.config import Settings
            from jobs_core.store import JobStore

            _store = JobStore.from_settings(Settings.from_env())
        return _store.dependency_results(self.job_id)


_store: Any = None


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the fork server (and so the worker) dies, so no orphan keeps running a job."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def child_main(conn: Connection, cancel_flag: Synchronized[int], config: ChildConfig) -> None:
    """Run jobs sent by the parent until it sends None or goes away."""
    # The parent decides when the child stops: signals meant for the worker (Ctrl-C in a terminal,
    # SIGTERM to the process group) must not kill a job it is draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    logs = TaskLogging(config.log_level)
    registry = load_task_modules(config.task_modules, config.cwd, check=False)
    finisher = Finisher(config.finish) if config.finish is not None else None
    send_reply(conn, ("ready", os.getpid()))
    while True:
        try:
            # a malformed frame (SlotMessageInvalid) ends the child: the parent sees a crash of the attempt
            job = receive_job(conn)
        except (EOFError, OSError):
            return
        if job is None:
            return
        ctx = ChildContext(conn, cancel_flag, job)
        fields = ctx.log_fields()
        trace_id = trace_id_of(job.trace)
        if trace_id is not None:
            fields["trace_id"] = trace_id
        logs.start_job(fields)
        try:
            reply = run_one(registry, job, ctx, config)
            if job.finish and finisher is not None and reply[0] == "done" and not ctx.progress_sent:
                # the worker claimed it when the queues were empty: store the success here, one hop less;
                # None (no connection, NOSCRIPT, ...) hands the result to the worker as without the flag
                # (the worker sends nothing while its job runs: a readable pipe is its end, EOF)
                reply = finisher.finish(job.job_id, job.attempt, reply[1], reply[2], conn.poll) or reply
            send_reply(conn, reply)
        finally:
            logs.end_job()


def run_one(registry: Mapping[str, Any], job: JobMessage, ctx: Context, config: ChildConfig) -> tuple[Any, ...]:
    """Run one attempt; the message for the parent."""
    task = registry.get(job.task)
    if task is None:
        return ("error", "UnknownTask", f"this worker has no task {job.task!r}", None, False, False, None)
    try:
        params = {**task.info.defaults, **(job.params if isinstance(job.params, Mapping) else {})}
        data, media_type = encode_result(task.fn(params, ctx))
        over = too_large(len(data), config.max_result_bytes)  # never sent: the parent reads up to the limit
        return ("done", data, media_type) if over is None else ("error", "ResultTooLarge", over, None, False,
                                                                 False, None)
    except JobCancelled as e:
        return ("error", "JobCancelled", str(e), None, True, False, None)
    except (Reject, ResultNotJSON) as e:  # running again cannot help: no retry, no traceback to puzzle over
        return ("error", type(e).__name__, str(e)[:10000], None, False, False, None)
    except Exception as e:  # a task's failure is data for the job, not a crash of the worker
        retryable = bool(task.should_retry(e))
        delay = float(e.delay) if isinstance(e, Retry) and e.delay is not None else None
        if retryable and delay is None:
            try:
                delay = task.retry_delay(job.attempt, config.retry_backoff_max_seconds)
            except Exception:  # a broken backoff function must not lose the job's own error
                ctx.log.exception("the task's backoff function failed; using the worker's backoff")
        tb = traceback.format_exc()[-20000:]
        return ("error", type(e).__name__, str(e)[:10000], tb, False, retryable, delay)
