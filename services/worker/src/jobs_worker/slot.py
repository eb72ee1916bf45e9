"""A worker slot: one supervised child process and the job it is running."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

from jobs_core.errors import SlotMessageInvalid
from jobs_core.store import ClaimedJob

from jobs_worker.child import ChildConfig, child_main
from jobs_worker.pipe import REPLY_HEADROOM, receive_reply, send_job, send_stop


@dataclass
class Running:
    """The job a slot is running and when it must stop."""

    job: ClaimedJob
    started: float
    deadline: float
    cancel_at: float | None = None  # set when a cancel was requested: kill if still running then
    progress: tuple[float | None, str | None] | None = None  # latest, not yet written
    progress_written: float = 0.0
    child_finishes: bool = False  # the child may store its success itself (jobs_worker.child_finish)


@dataclass
class Slot:
    """One child process; restarted whenever it is killed or dies."""

    index: int
    mp: BaseContext
    config: ChildConfig
    process: Any = None
    conn: Connection | None = None
    cancel_flag: Any = None
    running: Running | None = None
    ready: bool = False
    restarts: int = field(default=0)

    def start(self) -> None:
        """Start (or restart) the child process."""
        parent_conn, child_conn = self.mp.Pipe()
        self.cancel_flag = self.mp.Value("b", 0, lock=False)
        self.process = self.mp.Process(  # type: ignore[attr-defined]
            target=child_main,
            args=(child_conn, self.cancel_flag, self.config),
            name=f"jobs-worker-slot-{self.index}",
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        self.conn = parent_conn
        self.ready = False
        self.running = None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the child has imported its tasks (raises RuntimeError if it died)."""
        assert self.conn is not None
        if self.ready:
            return
        if not self.conn.poll(timeout):
            raise RuntimeError(f"slot {self.index}: child did not start in {timeout:g}s")
        message = self.receive()
        if message[0] != "ready":
            raise RuntimeError(f"slot {self.index}: unexpected first message {message!r}")
        self.ready = True

    def send(self, job: ClaimedJob, now: float, default_timeout: float, short_claim: bool = False) -> None:
        """Give ``job`` to the child; one of a ``short_claim`` (the queues were empty) the child finishes itself
        when it succeeds, if its config says how."""
        assert self.conn is not None
        self.cancel_flag.value = 0
        timeout = job.timeout if job.timeout > 0 else default_timeout
        finish = short_claim and self.config.finish is not None
        self.running = Running(job=job, started=now, deadline=now + timeout, child_finishes=finish)
        send_job(self.conn, job, time.time() + timeout, finish)

    def receive(self) -> tuple[Any, ...]:
        """The child's next message (:func:`jobs_worker.pipe.receive_reply`); a result of the size limit fits."""
        assert self.conn is not None
        message = receive_reply(self.conn, self.config.max_result_bytes + REPLY_HEADROOM)
        if self.ready and message[0] == "ready":
            raise SlotMessageInvalid("R frame: a child announced itself ready again, while running a job")
        if message[0] in ("finished", "lost") and not (self.running is not None and self.running.child_finishes):
            raise SlotMessageInvalid(f"a child said {message[0]!r} of a job it was not given to finish")
        return message

    def kill(self) -> None:
        """Kill the child at once (SIGKILL) and start a fresh one."""
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()
        self.restarts += 1
        self.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask an idle child to exit; kill it if it does not."""
        if self.conn is not None:
            try:
                send_stop(self.conn)
            except OSError:
                pass
        if self.process is not None:
            self.process.join(timeout)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(2)
        if self.conn is not None:
            self.conn.close()

    @property
    def alive(self) -> bool:
        """Whether the child process is running."""
        return self.process is not None and self.process.is_alive()


def mp_context() -> BaseContext:
    """Children come from a fork server: fast to start, and never forked from a threaded parent."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["jobs_worker.child", "jobs_worker.builtin_tasks"])
    return ctx


def monotonic() -> float:
    """The clock used for slot deadlines."""
    return time.monotonic()
