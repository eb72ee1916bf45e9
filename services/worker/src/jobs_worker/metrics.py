"""Prometheus metrics of one worker process, served on JOBS_WORKER_METRICS_PORT when it is set.

The chart's Grafana dashboard and PrometheusRule use these names (tests/observability checks them against a
real scrape): rename one only together with helm/jobs-api/dashboards/ and the rule template.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

#: The ``outcome`` label values of ``jobs_worker_outcomes_total``.
OUTCOMES = ("succeeded", "failed", "retry", "cancelled", "handback")


class WorkerMetrics:
    """Counters by task and outcome, a run-time histogram and the busy-slot gauge."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._started = Counter("jobs_worker_started_total", "Job attempts started", ["task", "queue"],
                                registry=self.registry)
        self._outcomes = Counter("jobs_worker_outcomes_total",
                                 "Job attempts ended, by outcome (succeeded, failed, retry, cancelled, handback)",
                                 ["task", "outcome", "queue"], registry=self.registry)
        self._lost = Counter("jobs_worker_lost_total", "Attempts this worker lost its lease on",
                             ["task"], registry=self.registry)
        self._runtime = Histogram("jobs_worker_run_seconds", "Time a task ran", ["task"],
                                  buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600),
                                  registry=self.registry)
        self._busy = Gauge("jobs_worker_busy_slots", "Slots running a job", registry=self.registry)
        self._slots = Gauge("jobs_worker_slots", "Slots (child processes) this worker runs jobs in",
                            registry=self.registry)
        self._reaped = Counter("jobs_worker_reaped_total",
                               "Attempts of lost workers (lease expired) this worker's reaper took back, by "
                               "queue and what became of them (requeued, failed: out of attempts)",
                               ["queue", "outcome"], registry=self.registry)

    def announce(self, slots: int, tasks: dict[str, str], queues: tuple[str, ...]) -> None:
        """At start: the slot count, and every series of the offered tasks and consumed queues at zero, so
        rates and alerts see them before the first event (a missing series is not a zero rate)."""
        self._slots.set(slots)
        for task, queue in tasks.items():
            self._started.labels(task, queue)
            for outcome in OUTCOMES:
                self._outcomes.labels(task, outcome, queue)
            self._lost.labels(task)
            self._runtime.labels(task)
        for queue in queues:
            for outcome in ("requeued", "failed"):
                self._reaped.labels(queue, outcome)

    def reaped(self, queue: str, requeued: int, failed: int) -> None:
        """This worker's reaper took back attempts of lost workers."""
        self._reaped.labels(queue, "requeued").inc(requeued)
        self._reaped.labels(queue, "failed").inc(failed)

    def started(self, task: str, queue: str = "") -> None:
        """An attempt started."""
        self._started.labels(task, queue).inc()

    def outcome(self, task: str, outcome: str, queue: str = "") -> None:
        """An attempt ended with ``outcome``."""
        self._outcomes.labels(task, outcome, queue).inc()

    def lost(self, task: str) -> None:
        """This worker lost an attempt (lease expired or taken over)."""
        self._lost.labels(task).inc()

    def finished_run(self, task: str, seconds: float) -> None:
        """A task returned or raised after ``seconds``."""
        self._runtime.labels(task).observe(seconds)

    def busy_slots(self, count: int) -> None:
        """How many slots are busy now."""
        self._busy.set(count)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:
        """Serve ``/metrics`` and ``/healthz`` on ``port`` in a daemon thread."""
        metrics = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, ctype, code = metrics.render(), CONTENT_TYPE_LATEST, 200
                elif self.path == "/healthz":
                    body, ctype, code = b'{"status":"ok"}', "application/json", 200
                else:
                    body, ctype, code = b'{"status":404}', "application/json", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        return server
