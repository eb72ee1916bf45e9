"""Huey: RedisHuey (blocking dequeue, BLPOP result notification), the no-op task."""

from __future__ import annotations

import os
from typing import Any

from huey import RedisHuey

URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
huey = RedisHuey("bench", url=URL, notify_result=True)


@huey.task()
def noop(params: dict[str, Any]) -> dict[str, Any]:
    """Return the params (same work as our ``echo``)."""
    return params
