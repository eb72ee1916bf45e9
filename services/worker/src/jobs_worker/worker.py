"""The worker loop: claim jobs, hand them to slot children, heartbeat, reap, finish, drain.

One single-threaded loop per worker process supervises ``concurrency`` slots. Redis errors never end
the loop: it backs off and carries on, keeping finished outcomes until Redis takes them. The loop's parts
live in their own modules: :mod:`jobs_worker.claiming` (claims and waits for work),
:mod:`jobs_worker.supervision` (the children), :mod:`jobs_worker.finishing` (storing outcomes) and
:mod:`jobs_worker.leases` (heartbeats, the reaper); :mod:`jobs_worker.loop_state` declares what they share.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

import redis
from jobs_core.config import Settings
from jobs_core.store import JobStore

from jobs_worker.child import ChildConfig
from jobs_worker.claiming import ClaimLoop
from jobs_worker.finishing import Finishing
from jobs_worker.leases import LeaseKeeping
from jobs_worker.loop_state import REDIS_DOWN
from jobs_worker.metrics import WorkerMetrics
from jobs_worker.outcomes import Outcome
from jobs_worker.podcost import PodDeletionCost
from jobs_worker.slot import Slot, monotonic, mp_context
from jobs_worker.spans import RunSpans
from jobs_worker.supervision import ChildSupervision
from jobs_worker.tasks import load_task_modules, published_info
from jobs_worker.waker import Waker

log = logging.getLogger("jobs.worker")


def new_worker_id() -> str:
    """``host:pid:random`` — unique across restarts and pods."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker(ClaimLoop, ChildSupervision, Finishing, LeaseKeeping):
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
                             self.settings.retry_backoff_max_seconds, self.settings.max_result_bytes)
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

    def _deregister(self) -> None:
        try:
            pipe = self.store.redis.pipeline(transaction=False)
            pipe.zrem(self.store.keys.workers, self.worker_id)
            pipe.delete(self.store.keys.worker(self.worker_id))
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError):
            pass

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
