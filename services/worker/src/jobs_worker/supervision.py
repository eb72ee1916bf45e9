"""The worker loop's supervision of its slot children: read what they sent, kill those past a deadline or a
cancel's grace, write their progress (throttled)."""

from __future__ import annotations

import dataclasses
import time
from multiprocessing.connection import wait as wait_connections
from typing import Any

from jobs_core.errors import SlotMessageInvalid
from jobs_core.model import JobError

from jobs_worker import outcomes
from jobs_worker.loop_state import WorkerState
from jobs_worker.outcomes import Outcome
from jobs_worker.slot import Running, Slot, monotonic

PROGRESS_INTERVAL_SECONDS = 0.2  # at most this often per job is progress written to Redis


class ChildSupervision(WorkerState):
    """Reading the children's messages into outcomes, enforcing hard timeouts and cancels, and writing
    progress; the outcomes are stored by :meth:`jobs_worker.finishing.Finishing._save`."""

    def _collect(self, timeout: float) -> None:
        """Read what children sent (progress, results, errors) and finish the jobs that ended."""
        busy = self._busy()
        waker = self.waker.waitable()  # the socket of the second connection's wait for a wake token, if any
        if not busy:
            if waker is not None:  # idle since the wait was sent: its reply ends this one
                if wait_connections([waker], timeout):
                    self.waker.read()
            elif timeout > 0:
                time.sleep(min(timeout, 0.05))
            return
        waitables: list[Any] = [s.conn for s in busy] + [s.process.sentinel for s in busy]
        if waker is not None:
            waitables.append(waker)
        ready = wait_connections(waitables, timeout)
        if not ready:
            return
        if waker is not None and waker in ready:
            self.waker.read()  # its claim comes at the next _fill_slots, after the children's outcomes
        ended: list[Outcome] = []
        for slot in busy:
            # only children that sent something or died: no poll and waitpid per quiet slot
            readable = slot.conn in ready
            if not readable and slot.process.sentinel not in ready:
                continue
            outcome = self._drain_slot(slot, readable)
            if outcome is not None:
                ended.append(outcome)
        if ended:
            # the slots just freed are refilled in the same round trip that stores the outcomes
            self._save(ended, refill=not self.stopping and not self.once)

    def _drain_slot(self, slot: Slot, readable: bool = False) -> Outcome | None:
        """Process every message waiting from one child (``readable``: the wait said its pipe is, so the
        first read needs no poll); the outcome if its job ended."""
        running = slot.running
        assert running is not None and slot.conn is not None
        error: JobError | None = None
        try:
            while readable or slot.conn.poll():
                readable = False
                message = slot.receive()
                kind = message[0]
                if kind == "progress":
                    # a fraction-only update must not drop a message not yet written
                    pending = running.progress[1] if running.progress else None
                    running.progress = (message[1], pending if message[2] is None else message[2])
                    continue
                slot.running = None
                self.spans.ran(running.job)
                self.metrics.finished_run(running.job.task, monotonic() - running.started)
                outcome = self._ended(running, message)
                # the last progress message, if not written yet, is stored before the outcome
                last = running.progress[1] if running.progress else None
                return outcome if last is None else dataclasses.replace(outcome, final_message=last)
        except (EOFError, OSError):
            pass
        except SlotMessageInvalid as e:  # the child's word cannot be trusted any more: handled as its crash
            error = JobError("SlotMessageInvalid", f"the process running the task sent an unreadable message: {e}")
        if error is None and slot.alive:
            return None
        # the child died under the job (segfault, OOM kill, os._exit) or is not to be believed: a crash
        code = slot.process.exitcode
        slot.running = None
        slot.kill()
        slot.wait_ready()
        error = error or JobError("ChildProcessDied", f"the process running the task exited with code {code}")
        return outcomes.failure(self.settings, running.job, error, cancelled=running.cancel_at is not None)

    def _ended(self, running: Running, message: tuple[Any, ...]) -> Outcome:
        """The outcome of a "done" or "error" message from a child."""
        if message[0] == "done":
            return outcomes.success(self.settings, running.job, message[1], message[2])
        _, etype, emsg, tb, cancelled, retryable, delay = message
        return outcomes.failure(
            self.settings, running.job, JobError(etype, emsg, tb),
            cancelled=cancelled or running.cancel_at is not None, retryable=retryable, retry_delay=delay,
        )

    def _enforce_deadlines(self) -> None:
        """Kill children past their job's hard timeout, or past the grace of a requested cancel."""
        now = monotonic()
        ended: list[Outcome] = []
        restarted: list[Slot] = []
        for slot in self._busy():
            running = slot.running
            assert running is not None
            if running.cancel_at is not None and now >= running.cancel_at:
                slot.kill()
                restarted.append(slot)
                ended.append(Outcome(running.job, "cancelled"))
            elif now >= running.deadline:
                slot.kill()
                restarted.append(slot)
                error = JobError("JobTimeout", f"the task ran longer than its timeout of {running.job.timeout:g}s")
                ended.append(outcomes.failure(self.settings, running.job, error))
        try:
            if ended:  # recorded while the fresh children start, not after (a start can take a second)
                self._save(ended)
        finally:
            for slot in restarted:
                slot.wait_ready()

    def _flush_progress(self) -> None:
        now = monotonic()
        for slot in self._busy():
            running = slot.running
            assert running is not None
            if running.progress is None or now - running.progress_written < PROGRESS_INTERVAL_SECONDS:
                continue
            fraction, message = running.progress
            running.progress = None
            running.progress_written = now
            self.store.set_progress(self.worker_id, running.job.id, running.job.attempt, fraction, message)
