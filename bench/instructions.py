"""Redis instructions per job (callgrind): the part of Redis cost that load does not change.

``python -m bench.instructions [--jobs 300] [--slots 1,4,8]`` (project .venv; needs valgrind) prints one
JSON line; ``make bench`` runs it as its ``instructions`` part and skips it when valgrind is missing.

One private redis-server under ``valgrind --tool=callgrind`` (:mod:`bench.profile_redis`, with the shipped
``jobs_core.redis_tuning`` settings), collecting only while a phase runs, the cron's instructions left out
(it runs per second of wall time, which valgrind stretches with the load): ``jobs`` lone submissions
(``JobStore.enqueue``), ``10 x jobs`` submitted as ``enqueue_many`` of 100, and for each slot count the
worker's finish + claim of ``jobs`` jobs in this process (``finish_and_claim`` of ``slots`` jobs per call,
no slot children: the per-job script work of a worker process with that many slots). Heartbeats and the
reaper are paid per second, not per job, and are left out (the commandstats figures of ``make bench``
include them). Only user-space instructions are counted: the kernel's share of a round trip (read, write,
epoll) is not in them (``redis_sys_us`` in the run's figures is).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis
from jobs_core.redis_tuning import REDIS_SERVER_CONFIG
from jobs_core.store import JobStore

from bench import profile_redis
from bench.common import emit
from bench.ours import enqueue_batched, enqueue_lib, settings


def measure(jobs: int, slots: list[int]) -> dict[str, Any]:
    """Instructions per job of each phase (see the module docstring)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        return {"skipped": "valgrind is not installed"}
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="jobs-bench-callgrind-"))
    out: dict[str, Any] = {"jobs": jobs, "batch": 100}
    try:
        with profile_redis.private_redis("callgrind", workdir) as (port, proc, dump):
            assert dump is not None
            client = redis.Redis(port=port)
            for name, value in REDIS_SERVER_CONFIG.items():  # as every Redis we ship runs
                client.config_set(name, value)
            store = JobStore(client, settings(f"redis://127.0.0.1:{port}/0"))

            def per_job(body: Callable[[], object], n: int) -> int:
                profile_redis.callgrind_phase(proc.pid, body)
                return round(profile_redis.instructions(dump) / n)

            out["enqueue_single"] = per_job(partial(enqueue_lib, store, jobs), jobs)
            out["enqueue_batched"] = per_job(partial(enqueue_batched, store, 10 * jobs, 100), 10 * jobs)
            client.flushdb()
            out["worker"] = {}
            for n in slots:
                enqueue_batched(store, jobs, 100)
                out["worker"][str(n)] = per_job(partial(profile_redis.worker_loop, store, n), jobs)
                client.flushdb()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--slots", default="1,4,8", help="worker slot counts, comma-separated")
    a = parser.parse_args()
    emit(measure(a.jobs, [int(s) for s in a.slots.split(",")]))


if __name__ == "__main__":
    main()
