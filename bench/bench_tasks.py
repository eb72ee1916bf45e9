"""Tasks only the bench loads (``JOBS_TASK_MODULES=bench.bench_tasks``): a job of a fixed length that
talks to nothing (the built-in ``sleep`` reports progress, which would add Redis commands per job)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from jobs_worker.tasks import Context, task


@task("nap", params_schema={"type": "object", "properties": {"ms": {"type": "number", "minimum": 0}}})
def nap(params: Mapping[str, Any], ctx: Context) -> dict[str, float]:
    """Sleep ``ms`` milliseconds (a job of fixed length: I/O wait, no CPU) and return it."""
    ms = float(params.get("ms", 0))
    time.sleep(ms / 1000)
    return {"ms": ms}
