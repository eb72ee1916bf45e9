"""Run-time percentiles from the per-minute history hashes.

The finish scripts (``lua/includes/queues.lua``, ``count_finished``) count every job that ends
(succeeded, failed or cancelled by its worker) in the minute's history hash, one ``HINCRBY`` of the field
``j:<status>:<bucket>:<task>``, which reads (:func:`jobs_core.browse.history_totals`) as one more in
``rt:<task>:<bucket>``, where the run time is the attempt's, from its claim to its recorded outcome on the
Redis clock (what the attempt log shows), and ``bucket = floor(4 * log2(ms))``: four buckets per doubling,
bucket 0 for anything under 1 ms. A percentile is the geometric middle of the bucket holding that rank, so
it is within :data:`RELATIVE_ERROR` (2^(1/8) - 1, about 9 %) of the true value, or within 1 ms below 1 ms.
Jobs the reaper fails (their worker died) have no run time and are not in the histogram.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: Buckets per doubling of the run time.
PER_DOUBLING = 4
#: Bound of an estimate's error relative to the true percentile (above 1 ms).
RELATIVE_ERROR = 2 ** (1 / (2 * PER_DOUBLING)) - 1
#: Field prefix of the histogram buckets in a history hash.
PREFIX = "rt:"
#: The percentiles reported.
PERCENTILES = (50, 95, 99)


def bucket(ms: float) -> int:
    """The bucket of a run time of ``ms`` milliseconds (as the Lua scripts compute it)."""
    return math.floor(PER_DOUBLING * math.log(ms) / math.log(2) + 1e-9) if ms >= 1 else 0


def bounds(b: int) -> tuple[float, float]:
    """The run times (ms) bucket ``b`` covers: ``[low, high)`` (bucket 0 also holds everything under 1 ms)."""
    return (0.0 if b == 0 else 2 ** (b / PER_DOUBLING), 2 ** ((b + 1) / PER_DOUBLING))


def estimate(b: int) -> float:
    """The value (ms) reported for a percentile falling in bucket ``b``: the bucket's geometric middle."""
    return float(2 ** ((b + 0.5) / PER_DOUBLING))


def buckets(minutes: Iterable[Mapping[str, int]], task: str | None = None) -> Counter[int]:
    """Counts per bucket summed over ``minutes`` (history hashes as ``field -> count``), of one task or of
    every task (a queue's)."""
    out: Counter[int] = Counter()
    for m in minutes:
        for name, n in m.items():
            if not name.startswith(PREFIX):
                continue
            field_task, _, b = name[len(PREFIX):].rpartition(":")
            if (task is None or field_task == task) and b.isdigit():
                out[int(b)] += n
    return out


def percentiles(counts: Mapping[int, int]) -> dict[str, Any]:
    """``{"count": n, "p50_ms": .., "p95_ms": .., "p99_ms": ..}`` (values None when there is no job)."""
    total = sum(counts.values())
    out: dict[str, Any] = {"count": total}
    ordered = sorted(counts.items())
    for p in PERCENTILES:
        value = None
        if total:
            rank = math.ceil(p / 100 * total)  # nearest rank: the smallest value with p % at or below it
            seen = 0
            for b, n in ordered:
                seen += n
                if seen >= rank:
                    value = round(estimate(b), 1)
                    break
        out[f"p{p}_ms"] = value
    return out


def run_time(minutes: Sequence[Mapping[str, int]], task: str | None = None) -> dict[str, dict[str, Any]]:
    """Percentiles of the last hour and of the whole of ``minutes`` (a day, oldest first) of one task or of
    every task: ``{"hour": {...}, "day": {...}}`` (see :func:`percentiles`)."""
    return {"hour": percentiles(buckets(minutes[-60:], task)), "day": percentiles(buckets(minutes, task))}
