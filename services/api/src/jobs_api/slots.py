"""Budgets for requests that hold a gunicorn thread for long: long-polls (``GET /jobs/{id}?wait=``) and
event streams (``GET /events``).

Each such request holds one of the process's ``JOBS_API_THREADS`` threads (gthread workers), so a crowd of
them could take every thread and ordinary requests would queue behind them. Together they may hold at most
all threads but two (``held()``); streams, which last longest, at most ``JOBS_API_STREAMS`` (default a
quarter of the threads, at least one) of those (``streams()``). A request that finds no slot is answered
at once (a long-poll with the job as it is, a stream with 503 + Retry-After) instead of waiting.
"""

from __future__ import annotations

import functools
import os
import threading


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:  # gunicorn_conf refuses it at start; the app alone (tests) uses the default
        return default


def threads() -> int:
    """Threads per process (``JOBS_API_THREADS``, default 8)."""
    return max(1, _env_int("JOBS_API_THREADS", 8))


@functools.cache
def held() -> threading.BoundedSemaphore:
    """Slots for every long-held request of this process: all threads but two."""
    return threading.BoundedSemaphore(max(1, threads() - 2))


def stream_limit() -> int:
    """Event streams one process serves at once (``JOBS_API_STREAMS``, default threads / 4, at least 1)."""
    return max(1, _env_int("JOBS_API_STREAMS", max(1, threads() // 4)))


@functools.cache
def streams() -> threading.BoundedSemaphore:
    """Slots for event streams (each also takes one of :func:`held`)."""
    return threading.BoundedSemaphore(stream_limit())
