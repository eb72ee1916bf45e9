"""Built-in tasks: ``echo`` (benchmarks), ``sleep``, ``primes`` (CPU-bound) and ``fail``."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from jobs_worker.tasks import Context, task


@task(
    "echo",
    params_schema={"type": "object", "description": "Any JSON object; it is returned as the result."},
    timeout=60,
)
def echo(params: Mapping[str, Any], ctx: Context) -> Any:
    """Return the params unchanged (a no-op job, used by benchmarks and health checks)."""
    return params


@task(
    "sleep",
    params_schema={
        "type": "object",
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": 86400, "default": 1,
                        "description": "How long to sleep."},
        },
        "additionalProperties": False,
    },
)
def sleep(params: Mapping[str, Any], ctx: Context) -> dict[str, float]:
    """Sleep for ``seconds``, reporting progress about ten times along the way."""
    seconds = float(params.get("seconds", 1))
    steps = max(1, min(10, int(seconds * 10)))
    for i in range(steps):
        ctx.check_cancelled()
        time.sleep(seconds / steps)
        ctx.progress((i + 1) / steps, f"slept {(i + 1) * seconds / steps:.2f}s of {seconds:g}s")
    return {"slept": seconds}


@task(
    "primes",
    params_schema={
        "type": "object",
        "properties": {
            "limit": {"type": "integer", "minimum": 2, "maximum": 1_000_000_000,
                      "description": "Count the primes <= limit."},
        },
        "required": ["limit"],
        "additionalProperties": False,
    },
)
def primes(params: Mapping[str, Any], ctx: Context) -> dict[str, int]:
    """Count the primes <= ``limit`` with a segmented sieve (CPU-bound), reporting progress."""
    limit = int(params["limit"])
    root = math.isqrt(limit)
    base = bytearray([1]) * (root + 1)
    base[0:2] = b"\x00\x00"
    for i in range(2, math.isqrt(root) + 1):
        if base[i]:
            base[i * i :: i] = bytearray(len(base[i * i :: i]))
    small = [i for i in range(2, root + 1) if base[i]]
    count = 0
    segment = 1 << 20
    low = 0
    while low <= limit:
        high = min(low + segment - 1, limit)
        sieve = bytearray([1]) * (high - low + 1)
        for p in small:
            start = max(p * p, (low + p - 1) // p * p)
            if start > high:
                continue
            sieve[start - low :: p] = bytearray(len(sieve[start - low :: p]))
        if low == 0:
            sieve[0 : min(2, len(sieve))] = bytearray(min(2, len(sieve)))
        count += sum(sieve)
        low = high + 1
        ctx.progress(min(1.0, low / (limit + 1)), None)
        ctx.check_cancelled()
    return {"limit": limit, "count": count}


@task(
    "fail",
    params_schema={
        "type": "object",
        "properties": {"message": {"type": "string", "maxLength": 10000, "default": "failed on purpose"}},
        "additionalProperties": False,
    },
    max_attempts=3,  # retried twice (with backoff) before it lands in the failed index, as a real failure would
)
def fail(params: Mapping[str, Any], ctx: Context) -> None:
    """Raise ``RuntimeError(message)`` on every attempt: 3 attempts with backoff, then ``failed`` (exercises
    retries and the failed index; submit with ``max_attempts: 1`` to fail at once)."""
    raise RuntimeError(str(params.get("message", "failed on purpose")))
