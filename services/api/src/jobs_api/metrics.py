"""Prometheus metrics, correct under several gunicorn worker processes.

The chart's Grafana dashboard and PrometheusRule use these names (tests/observability checks them against a
real scrape): rename one only together with helm/jobs-api/dashboards/ and the rule template.

gunicorn.conf.py (or the ``jobs-api`` launcher) points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh temporary
directory before any worker starts, so every worker writes its samples to files there and ``/metrics``
(answered by any one worker) aggregates all of them; a dead worker's files are marked by the
``child_exit`` hook. Queue sizes are not samples: they are read from Redis at scrape time, so every
scrape is current no matter which worker answers it.

Without ``PROMETHEUS_MULTIPROC_DIR`` (one process, e.g. the Flask test client) the default registry is
used.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger("jobs_api")

WEBHOOK_DELIVERIES = Counter(
    "jobs_webhook_deliveries",
    "Webhook delivery attempts by outcome (delivered, failed: will be retried, refused: unsafe destination, "
    "expired: deadline passed, given up).",
    ["outcome"],
)
SUBMISSIONS = Counter(
    "jobs_api_submissions",
    "Job submissions by task and outcome (accepted, replayed, invalid, unknown_task, conflict, queue_full, "
    "unavailable).",
    ["task", "outcome"],
)
REQUEST_LATENCY = Histogram(
    "jobs_api_request_duration_seconds",
    "HTTP request latency by method, route and status code.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

#: Label used for a task name nobody published, so clients cannot blow up label cardinality.
UNKNOWN_TASK_LABEL = "_unknown"


#: What the scrape reads from Redis: per queue its jobs by state and its live workers, and the failed index.
Snapshot = tuple[Mapping[str, Mapping[str, int]], Mapping[str, int], int]


class QueueCollector:
    """Reads per-queue counts (queued, paused, running, delayed, unrunnable), live workers per queue and
    the failed index from Redis at scrape time."""

    def __init__(self, counts: Callable[[], Snapshot],
                 ages: Callable[[list[str]], Mapping[str, float]] | None = None) -> None:
        self._counts = counts
        self._ages = ages

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("jobs_api_redis_up", "1 when Redis answered the scrape-time queue read.")
        try:
            counts = self._counts()
        except Exception as e:  # an unreachable Redis must not break the scrape
            log.warning("metrics: cannot read queue counts: %s", type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        per_queue, workers, failed = counts
        jobs = GaugeMetricFamily(
            "jobs_queue_jobs",
            "Jobs by queue and state (queued: in the waiting lists; paused; running; delayed; unrunnable: set "
            "aside by workers that lack their task), read from Redis at scrape time.",
            labels=["queue", "state"],
        )
        for queue, states in sorted(per_queue.items()):
            for state, value in sorted(states.items()):
                jobs.add_metric([queue, state], value)
        yield jobs
        live = GaugeMetricFamily("jobs_queue_workers", "Live workers consuming each queue.", labels=["queue"])
        for queue in sorted(per_queue):
            live.add_metric([queue], workers.get(queue, 0))
        yield live
        failed_jobs = GaugeMetricFamily("jobs_failed_jobs", "Jobs in the failed index (all queues).")
        failed_jobs.add_metric([], failed)
        yield failed_jobs
        if self._ages is not None:
            oldest = GaugeMetricFamily(
                "jobs_queue_oldest_waiting_age_seconds",
                "Seconds since the oldest job in each queue's waiting lists was submitted (0 when none waits; "
                "paused and delayed jobs are not waiting).", labels=["queue"])
            try:
                ages = self._ages(sorted(per_queue))
            except Exception as e:  # counts were read: keep them, leave the ages out of this scrape
                log.warning("metrics: cannot read queue ages: %s", type(e).__name__)
                return
            for queue in sorted(per_queue):
                oldest.add_metric([queue], ages.get(queue, 0.0))
            yield oldest


def multiprocess_dir() -> str | None:
    """The multiprocess directory in use, if any."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def render(counts: Callable[[], Snapshot],
           ages: Callable[[list[str]], Mapping[str, float]] | None = None) -> tuple[bytes, str]:
    """The exposition text for a scrape, and its content type."""
    queue = CollectorRegistry(auto_describe=True)
    queue.register(QueueCollector(counts, ages))  # type: ignore[arg-type,unused-ignore]
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    return body + generate_latest(queue), CONTENT_TYPE_LATEST


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_latency(method: str, route: str, status: int, start: float) -> None:
    """Record a request in the latency histogram (``start``: its ``time.perf_counter()`` at arrival)."""
    # labels come from a bounded set: no client can mint new series with odd methods or paths
    method = method if method in _METHODS else "other"
    REQUEST_LATENCY.labels(method, route, str(status)).observe(time.perf_counter() - start)
