"""The worker loop: claim jobs, hand them to slot children, heartbeat, reap, finish, drain.

One single-threaded loop per worker process supervises ``concurrency`` slots. Redis errors never end
the loop: it backs off and carries on, keeping finished outcomes until Redis takes them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait as wait_connections
from types import FrameType
from typing import Any

import redis
from jobs_core import tracing
from jobs_core.config import Settings
from jobs_core.errors import BackendUnavailable
from jobs_core.model import JobError
from jobs_core.store import ClaimedJob, Finish, JobStore

from jobs_worker import outcomes
from jobs_worker.child import ChildConfig, receive_message
from jobs_worker.metrics import WorkerMetrics
from jobs_worker.outcomes import Outcome
from jobs_worker.podcost import PodDeletionCost
from jobs_worker.slot import Running, Slot, monotonic, mp_context
from jobs_worker.spans import RunSpans
from jobs_worker.tasks import load_task_modules, published_info
from jobs_worker.waker import Waker

log = logging.getLogger("jobs.worker")

#: Redis unreachable, failing over, or a write not confirmed on JOBS_ACK_REPLICAS replicas in time
#: (BackendUnavailable): the loop backs off and re-sends; outcomes are kept until Redis confirms them.
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError, BackendUnavailable)

CANCEL_GRACE_SECONDS = 1.0  # a cancelled task may stop by itself this long before it is killed
PROGRESS_INTERVAL_SECONDS = 0.2  # at most this often per job is progress written to Redis
BUSY_POLL_SECONDS = 0.05  # while some slots run and the queue is empty, look for work this often when the
# second connection's wait (jobs_worker.waker) cannot be made
BLOCK_SECONDS = 1.0  # longest blocking wait on the queue when every slot is idle
# a partially busy worker blocks for a wake token once its oldest running job has run this long: a lone short
# job ends before, and the idle worker's own wait follows (a job submitted meanwhile waits at most this long)
ARM_AFTER_SECONDS = 0.01


WORKER_LOST = JobError("WorkerLost", "the worker running this attempt stopped heartbeating (killed or lost)")


def job_fields(job: ClaimedJob) -> dict[str, Any]:
    """The log fields naming a job's attempt (with the trace id when tracing is on), so one grep for the
    job id shows its whole story across the API and the workers."""
    fields: dict[str, Any] = {"job": job.id, "task": job.task, "attempt": job.attempt, "queue": job.queue}
    trace_id = tracing.log_trace_id(job.trace)
    if trace_id is not None:
        fields["trace_id"] = trace_id
    return fields


def new_worker_id() -> str:
    """``host:pid:random`` — unique across restarts and pods."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Runs jobs from its queues (strict order) with ``concurrency`` supervised child processes.

    With ``once`` it claims one job, runs it and exits (one job per pod, e.g. a KEDA ScaledJob); leases,
    hand-back on SIGTERM and the reaper work as for any worker.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int | None = None,
        burst: bool = False,
        once: bool = False,
        store: JobStore | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.once = once
        self.concurrency = 1 if once else (concurrency or settings.concurrency)
        self.claimed_any = False
        # the last wait for work ended with a claim that found nothing: the next look starts with the wait
        self.waited_empty = False
        # the last claim got fewer jobs than it asked for (the queues were empty then): the next loop waits for
        # the children first instead of claiming again at once (see _fill_slots)
        self.claimed_short = False
        self.burst = burst
        self.store = store or JobStore.from_settings(settings)
        self.worker_id = new_worker_id()
        self.metrics = metrics or WorkerMetrics()
        self.pod_cost = PodDeletionCost(settings.pod_name, settings.pod_namespace)
        self.slots: list[Slot] = []
        self.unsaved: list[Outcome] = []  # outcomes Redis has not taken yet (it was down)
        self.stopping = False
        self.hand_back_now = False
        self.drain_deadline = 0.0
        self.heartbeat_interval = max(0.2, settings.lease_seconds / 3)
        self.next_heartbeat = 0.0
        self.next_reap = 0.0
        self.next_prune = 0.0
        self.last_touch = 0.0
        self.last_redis_error = 0.0
        self.recheck_claims = False  # set by a Redis error: look for claims whose reply was lost
        self.started = time.time()
        self.offered: dict[str, str] = {}  # task name -> the queue it is published on
        self.spans = RunSpans(self.store, self.worker_id)  # does nothing while tracing is off
        self.reap_queues: list[str] = list(self.store.queues)
        # a partially busy worker's blocking wait for a wake token, beside its children's pipes (profile 31)
        self.waker = Waker(self.store.redis, [self.store.keys.for_queue(q).wake for q in self.store.queues])

    # ------------------------------------------------------------------ lifecycle
    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: drain; a second one: hand back at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            self.hand_back_now = True
        else:
            self.stopping = True
            self.drain_deadline = monotonic() + self.settings.drain_seconds

    def start(self) -> None:
        """Start the slot children and announce this worker's tasks."""
        cwd = os.getcwd()
        registry = load_task_modules(self.settings.task_modules, cwd)  # fail fast on a bad module or task
        ctx = mp_context()
        config = ChildConfig(self.settings.task_modules, cwd, self.settings.log_level,
                             self.settings.retry_backoff_max_seconds)
        self.slots = [Slot(i, ctx, config) for i in range(self.concurrency)]
        for slot in self.slots:
            slot.start()
        for slot in self.slots:
            slot.wait_ready()
        infos = [published_info(t, self.settings.queue) for t in registry.values()]
        self.offered = {info.name: info.queue for info in infos}
        self.metrics.announce(self.concurrency, self.offered, self.store.queues)
        # claims skip (park) jobs of tasks this worker lacks: a worker that has them runs them
        self.store.offers = tuple(sorted(self.offered))
        self._retrying(lambda: self.store.publish_tasks(infos))
        unserved = sorted({q for q in self.offered.values()} - set(self.store.queues))
        if unserved:
            log.warning("tasks declare queues this worker does not consume; other workers must",
                        extra={"queues": unserved, "consumes": list(self.store.queues)})
        log.info(
            "worker started",
            extra={"worker": self.worker_id, "concurrency": self.concurrency, "tasks": sorted(registry),
                   "queues": list(self.store.queues), "once": self.once},
        )

    def run(self) -> int:
        """Run until stopped (or, with ``burst``, until the queue is empty); return the exit code."""
        self.start()
        try:
            while self._step():
                pass
        finally:
            self._settle_waker()
            self.waker.close()
            for slot in self.slots:
                slot.stop()
            self._deregister()
            self.pod_cost.close()
            self.spans.close()
        log.info("worker stopped", extra={"worker": self.worker_id})
        return 0

    def _step(self) -> bool:
        """One loop iteration; False when the worker should exit."""
        now = monotonic()
        self._touch_health(now)
        try:
            if now >= self.next_heartbeat:
                self._heartbeat(now)
            if self.unsaved:
                self._save(self.unsaved)
            if self.stopping:
                self._settle_waker()
                if not self._busy() and not self.unsaved:
                    return False
                if self.hand_back_now or now >= self.drain_deadline:
                    self._hand_back_all()
                    return False
                self._collect(min(0.2, max(0.0, self.drain_deadline - now)))
            else:
                if now >= self.next_reap:
                    self._reap(now)
                if self.once and self.claimed_any and not self._busy() and not self.unsaved:
                    return False
                found = self._fill_slots()
                if self.burst and not found and not self._busy() and not self.unsaved and self._queue_empty():
                    return False
                # an idle worker whose blocking wait just came back empty (its timeout, or a token whose work
                # another claim took) goes straight back to it: a pause here (50 ms) was a job's wait when it
                # came meanwhile (profile 26: the 1-slot round trip's ~27 ms p50)
                no_pause = (found and self._free()) or (self.waited_empty and not self.waker.pending)
                self._collect(0.0 if no_pause else self._wait_time())
            self._enforce_deadlines()
            self._flush_progress()
        except REDIS_DOWN as e:
            self._redis_down(e)
        return True

    # ------------------------------------------------------------------ claiming
    def _free(self) -> list[Slot]:
        return [s for s in self.slots if s.running is None]

    def _busy(self) -> list[Slot]:
        return [s for s in self.slots if s.running is not None]

    def _fill_slots(self) -> bool:
        """Give queued jobs to idle slots; block briefly for work (a wake token) when every slot is idle, or
        wait for one on the second connection (the waker) beside the children when some are busy."""
        free = self._free()
        self.waker.overdue(monotonic())
        woke = self.waker.take()  # the partially busy worker's wait came back: a token, its timeout, or unknown
        if woke is not None and (not free or (self.once and self.claimed_any)):
            self.waker.pass_on(woke)  # its slots filled meanwhile: the token is another worker's
            return False
        if not free or (self.once and self.claimed_any):
            return False
        idle = len(free) == len(self.slots)
        if woke is not None:
            # after a wait that may have taken a token: the claim passes one on when it fills up with work left
            # (the wake rule, includes/claim_batch.lua), as an idle worker's claim after its wait does
            self.claimed_short = self.waited_empty = False
            return self._dispatch_claimed(free, self.store.finish_and_claim(self.worker_id, (), -len(free))[1])
        if self.waker.pending:
            return False  # its reply wakes the loop (_collect waits on it): no claim meanwhile
        if self.claimed_short:
            # the last claim emptied the queues: claiming again at once finds nothing but costs a Redis round
            # trip, during which a job just started may end (its result then waits in the pipe: issue 16's
            # round trip). Busy: block for a wake token on the second connection, beside the children (a
            # job queued since left a token: it was queued on an empty list), once the oldest running job
            # has run ARM_AFTER_SECONDS: a lone short job ends before, and the idle worker's wait, its
            # claim pipelined behind it, follows (a token the second connection took would cost the next
            # job a round trip more). Without that connection, wait for the children first (at most
            # BUSY_POLL_SECONDS), then look again. Idle: straight to the blocking wait, whose claim follows it
            if not idle:
                now = monotonic()
                if now < self._arm_at():
                    return False  # (claimed_short kept: _wait_time wakes the loop then)
                self.claimed_short = False
                self.waker.arm(now)
                return False
            self.claimed_short = False
            self.waited_empty = True
        self.claimed_short = False
        # an idle worker whose wait just ended with an empty claim goes straight back to waiting (a wake
        # token pushed since is in its wake list, so the wait returns at once)
        jobs = [] if idle and self.waited_empty else self.store.claim(self.worker_id, len(free))
        self.waited_empty = False
        if not jobs and idle:
            timeout = min(BLOCK_SECONDS, max(0.05, self.next_heartbeat - monotonic()))
            # the claim is pipelined behind the blocking wait: Redis runs it as soon as a token arrives
            jobs = self.store.wait_and_claim(self.worker_id, len(free), timeout)
            self.waited_empty = not jobs
        return self._dispatch_claimed(free, jobs)

    def _dispatch_claimed(self, free: list[Slot], jobs: list[ClaimedJob]) -> bool:
        """Start what a claim for ``free`` slots got; whether it got any."""
        if not jobs:
            self.claimed_short = True
            return False
        self.claimed_short = len(jobs) < len(free)
        self._dispatch(free, jobs)
        return True

    def _settle_waker(self) -> None:
        """Stopping: cut the second connection's wait short; a token it took is passed on, not claimed."""
        if not self.waker.pending and self.waker.news is None:
            return
        try:
            woke = self.waker.settle()
            if woke is not None:
                self.waker.pass_on(woke)
        except REDIS_DOWN as e:
            log.warning("could not pass on a wake token; idle workers look for work at their wait's timeout",
                        extra={"error": str(e)})

    def _dispatch(self, free: list[Slot], jobs: list[ClaimedJob]) -> None:
        """Hand claimed jobs to idle slots (never more jobs than ``free`` slots: claims ask for that many)."""
        was_idle = len(free) == len(self.slots)
        now = monotonic()
        self.claimed_any = self.claimed_any or bool(jobs)
        jobs = self.spans.claimed(jobs)
        for slot, job in zip(free, jobs, strict=False):
            slot.send(job, now, self.settings.default_timeout_seconds)
            self.metrics.started(job.task, job.queue)
            if log.isEnabledFor(logging.INFO):  # the fields cost more than the level check
                log.info("job started", extra={**job_fields(job), "worker": self.worker_id})
        if was_idle and jobs:
            self.pod_cost.set_busy(True)

    def _arm_at(self) -> float:
        """When a partially busy worker starts its wait for a wake token: ARM_AFTER_SECONDS after its oldest
        running job started (see _fill_slots)."""
        return min(s.running.started for s in self._busy() if s.running) + ARM_AFTER_SECONDS

    def _wait_time(self) -> float:
        """How long to wait for children when nothing else is due."""
        until_beat = max(0.0, self.next_heartbeat - monotonic())
        if self._free() and not self.waker.pending:  # (the waker's reply ends the wait when work comes)
            if self.claimed_short and self._busy():
                return max(0.0, min(until_beat, self._arm_at() - monotonic()))  # then the waker is armed
            return min(BUSY_POLL_SECONDS, until_beat)
        deadlines = [s.running.deadline for s in self._busy() if s.running]
        cancels = [s.running.cancel_at for s in self._busy() if s.running and s.running.cancel_at]
        soonest = min([*deadlines, *cancels], default=monotonic() + until_beat)
        return max(0.0, min(until_beat, soonest - monotonic(), PROGRESS_INTERVAL_SECONDS))

    def _queue_empty(self) -> bool:
        """No waiting or delayed job in this worker's queues (asked after a claim found nothing, so parked
        jobs left are of tasks it lacks: not its to wait for; a paused queue's jobs neither)."""
        counts = self.store.queue_counts(self.store.queues).values()
        return all(c["queued"] == 0 and c["delayed"] == 0 for c in counts)

    # ------------------------------------------------------------------ children
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
        try:
            while readable or slot.conn.poll():
                readable = False
                message = receive_message(slot.conn)
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
        if slot.alive:
            return None
        # the child died under the job (segfault, OOM kill, os._exit): a crash of this attempt
        code = slot.process.exitcode
        slot.running = None
        slot.kill()
        slot.wait_ready()
        error = JobError("ChildProcessDied", f"the process running the task exited with code {code}")
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

    # ------------------------------------------------------------------ Redis writes
    def _save(self, ended: list[Outcome], refill: bool = False) -> None:
        """Write outcomes in one round trip, claiming jobs for the free slots in the same script when
        ``refill``; keep the outcomes for later if Redis is unreachable."""
        pending = [o for o in ended if o not in self.unsaved]
        batch = [*self.unsaved, *pending]
        self.unsaved = batch  # kept until Redis has them
        free = self._free() if refill else []
        for o in batch:
            if o.final_message is not None:
                self.store.set_progress(self.worker_id, o.job.id, o.job.attempt, None, o.final_message)
        finishes = [Finish(o.job.id, o.job.attempt, o.kind, o.result, o.error, o.retry_delay) for o in batch]
        with tracing.current(self.spans.span_of([o.job for o in batch])):
            statuses, claimed = self.store.finish_and_claim(self.worker_id, finishes, len(free))
        self.unsaved = []
        self.claimed_short = refill and len(claimed) < len(free)  # the queues were empty: see _fill_slots
        for o, status in zip(batch, statuses, strict=True):
            self.spans.ended(o.job, o.kind if status is not None else "lost", o.error, o.result)
            if status is None:
                self.metrics.lost(o.job.task)
                log.warning("attempt was no longer ours; outcome dropped",
                            extra={**job_fields(o.job), "outcome": o.kind})
            else:
                self.metrics.outcome(o.job.task, o.kind, o.job.queue)
                if log.isEnabledFor(logging.INFO):
                    log.info("job attempt ended", extra={**job_fields(o.job), "outcome": o.kind, "status": status,
                                                         "error": o.error.type if o.error else None})
        if claimed:
            self._dispatch(free, claimed)
        elif not self._busy():
            self.pod_cost.set_busy(False)

    def _heartbeat(self, now: float) -> None:
        self.next_heartbeat = now + self.heartbeat_interval
        held: list[ClaimedJob] = [s.running.job for s in self._busy() if s.running]
        held += [o.job for o in self.unsaved]
        status = {
            "id": self.worker_id, "queue": self.store.queues[0], "queues": list(self.store.queues),
            "tasks": self.offered, "once": self.once, "pid": os.getpid(),
            "concurrency": self.concurrency, "busy": len(self._busy()), "started_at": self.started,
            "jobs": [j.id for j in held], "stopping": self.stopping,
        }
        ttl = max(3, int(self.heartbeat_interval * 3 + 1))
        cancel, lost = self.store.heartbeat(self.worker_id, [(j.id, j.attempt) for j in held], status, ttl)
        self.metrics.busy_slots(len(self._busy()))
        if self.recheck_claims:
            self._release_unknown_claims(held)
        for slot in self._busy():
            running = slot.running
            assert running is not None
            if running.job.id in lost:
                log.warning("lease lost; stopping the job here", extra=job_fields(running.job))
                self.metrics.lost(running.job.task)
                self.spans.ended(running.job, "lost")
                slot.kill()
                slot.wait_ready()
            elif running.job.id in cancel and running.cancel_at is None:
                slot.cancel_flag.value = 1
                running.cancel_at = monotonic() + CANCEL_GRACE_SECONDS
        if lost:
            self.unsaved = [o for o in self.unsaved if o.job.id not in lost]

    def _release_unknown_claims(self, held: list[ClaimedJob]) -> None:
        """After a Redis error: a claim that ran in Redis but whose reply was lost with the connection leased
        jobs to this worker that it never heard of. Hand them back (attempt not charged) rather than leave
        them to the reaper, which would charge them an attempt (and fail a max_attempts=1 job unrun)."""
        known = {(j.id, j.attempt) for j in held}
        strays = [(i, a) for i, a in self.store.leased_to(self.worker_id) if (i, a) not in known]
        for job_id, attempt in strays:
            self.store.finish(self.worker_id, job_id, attempt, "handback")
        self.recheck_claims = False
        if strays:
            log.warning("handed back jobs claimed by a call whose reply was lost",
                        extra={"jobs": [i for i, _ in strays]})

    def _reap(self, now: float) -> None:
        self.next_reap = now + self.settings.reaper_interval_seconds
        if now >= self.next_prune:  # every known queue, not only ours: a pool whose workers all died (or
            # that scaled to zero) still gets its expired leases handed back and its cap slots freed
            self.reap_queues = list(dict.fromkeys([*self.store.queues, *self.store.queue_names()]))
        for queue in self.reap_queues:
            report = self.store.reap(queue=queue)
            if report.ran and (report.requeued or report.failed):
                log.warning("reaper handed back jobs of lost workers", extra={
                    "queue": queue, "requeued": list(report.requeued), "failed": list(report.failed)})
                self.spans.reaped([*report.requeued, *report.failed], WORKER_LOST)
            if report.ran:
                self.metrics.reaped(queue, len(report.requeued), len(report.failed))
        if now >= self.next_prune:
            self.next_prune = now + 60
            self.store.prune_indexes()
            self.store.retire_stale_tasks()

    def _hand_back_all(self) -> None:
        """Stop running jobs and put them back at the head of the queue, attempt not charged."""
        ended: list[Outcome] = []
        for slot in self._busy():
            running = slot.running
            assert running is not None
            slot.running = None
            if slot.alive and slot.process is not None:
                slot.process.kill()
            ended.append(Outcome(running.job, "handback"))
        for attempt in range(3):
            try:
                self._save(ended)
                log.info("handed back running jobs", extra={"jobs": [o.job.id for o in ended]})
                return
            except REDIS_DOWN as e:
                ended = []
                if attempt == 2:
                    log.error("could not hand back jobs; the reaper will recover them", extra={"error": str(e)})
                time.sleep(0.5)

    def _deregister(self) -> None:
        try:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.zrem(self.store.keys.workers, self.worker_id)
            pipe.delete(self.store.keys.worker(self.worker_id))
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            pass

    # ------------------------------------------------------------------ health
    def _touch_health(self, now: float) -> None:
        if now - self.last_touch < 1.0:
            return
        self.last_touch = now
        path = self.settings.worker_health_file
        try:
            with open(path, "a"):
                os.utime(path, None)
        except OSError:
            pass

    def _redis_down(self, error: Exception) -> None:
        now = monotonic()
        if now - self.last_redis_error > 5:
            log.error("redis unavailable; retrying", extra={"error": str(error)})
        self.last_redis_error = now
        self.recheck_claims = True
        time.sleep(0.5)

    def _retrying(self, action: Callable[[], object]) -> None:
        """Run ``action`` until Redis takes it, keeping the health file fresh meanwhile: a worker waiting
        for Redis (slow PVC, outage) is alive, and its startup/liveness probes must not restart it."""
        while True:
            self._touch_health(monotonic())
            try:
                action()
                return
            except REDIS_DOWN as e:
                self._redis_down(e)
                if self.stopping:
                    return
