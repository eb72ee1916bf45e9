"""Celery: Redis broker and Redis result backend, the no-op task."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    broker_connection_retry_on_startup=True, worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop(params: dict[str, Any]) -> dict[str, Any]:
    """Return the params (same work as our ``echo``)."""
    return params
