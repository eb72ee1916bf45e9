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
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from jobs_core.serialization import dumps

from jobs_worker.tasks import BinaryResult, JobCancelled, load_task_modules

JSON_MEDIA_TYPE = "application/json"
PR_SET_PDEATHSIG = 1

# Messages child -> parent:
#   ("progress", fraction | None, message | None)
#   ("done", result bytes, media type)
#   ("error", type name, message, traceback, cancelled: bool)


class ChildContext:
    """The :class:`jobs_worker.tasks.Context` given to tasks inside the child."""

    def __init__(self, conn: Connection, cancel_flag: Synchronized[int], job_id: str, attempt: int) -> None:
        self._conn = conn
        self._cancel_flag = cancel_flag
        self.job_id = job_id
        self.attempt = attempt

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        """Send progress to the parent, which writes it to Redis (throttled)."""
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        self._conn.send(("progress", fraction, None if message is None else str(message)[:1000]))

    @property
    def cancelled(self) -> bool:
        """True once the parent saw a cancel request for this job."""
        return bool(self._cancel_flag.value)

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job's cancel was requested."""
        if self._cancel_flag.value:
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def dependency_results(self) -> dict[str, Any]:
        """The results of this job's succeeded dependencies (``depends_on``, workflows), by job id."""
        global _store
        if _store is None:  # the child's own connection, made on first use (settings: the worker's env)
            from jobs_core.config import Settings
            from jobs_core.store import JobStore

            _store = JobStore.from_settings(Settings.from_env())
        return _store.dependency_results(self.job_id)


_store: Any = None


def encode_result(value: Any) -> tuple[bytes, str]:
    """Result bytes and media type for a task's return value."""
    if isinstance(value, BinaryResult):
        return bytes(value.data), value.media_type
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "application/octet-stream"
    return dumps(value), JSON_MEDIA_TYPE


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the fork server (and so the worker) dies, so no orphan keeps running a job."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def child_main(conn: Connection, cancel_flag: Synchronized[int], task_modules: tuple[str, ...]) -> None:
    """Run jobs sent by the parent until it sends None or goes away."""
    # The parent decides when the child stops: signals meant for the worker (Ctrl-C in a terminal,
    # SIGTERM to the process group) must not kill a job it is draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent()
    registry = load_task_modules(task_modules)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        job_id, task_name, params, attempt = message
        ctx = ChildContext(conn, cancel_flag, job_id, attempt)
        try:
            task = registry.get(task_name)
            if task is None:
                conn.send(("error", "UnknownTask", f"this worker has no task {task_name!r}", None, False))
                continue
            params = {**task.info.defaults, **(params if isinstance(params, Mapping) else {})}
            data, media_type = encode_result(task.fn(params, ctx))
            conn.send(("done", data, media_type))
        except JobCancelled as e:
            conn.send(("error", "JobCancelled", str(e), None, True))
        except Exception as e:  # a task's failure is data for the job, not a crash of the worker
            conn.send(("error", type(e).__name__, str(e)[:10000], traceback.format_exc()[-20000:], False))
