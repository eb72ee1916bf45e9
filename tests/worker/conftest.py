"""Fixtures for tests that run real ``jobs-worker`` processes."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from jobs_core.config import Settings
from support.procs import service_env, start_worker, stop

StartWorker = Callable[..., subprocess.Popen[bytes]]
#: short leases: a killed worker's job is recovered in seconds
LEASE_SECONDS = 2.0
REAPER_SECONDS = 0.5


@pytest.fixture
def worker_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """Environment for worker processes on the test's namespace, with short leases."""
    return service_env(settings.redis_url, settings.key_prefix, settings.queue, {
        "JOBS_LEASE_SECONDS": str(LEASE_SECONDS),
        "JOBS_REAPER_INTERVAL_SECONDS": str(REAPER_SECONDS),
        "JOBS_RETRY_BACKOFF_SECONDS": "0.2",
        "JOBS_DRAIN_SECONDS": "10",
        "JOBS_WORKER_HEALTH_FILE": str(tmp_path / "alive"),
    })


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    """Start workers with ``workers(*args, **env_overrides)``; all are stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[bytes]:
        proc = start_worker({**worker_env, **env}, *args, log=tmp_path / f"worker-{len(started)}.log")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        stop(proc, timeout=15)
