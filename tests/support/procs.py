"""Starting the real services as processes, and waiting for conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
TEST_TASKS_DIR = ROOT / "tests" / "support"

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def service_env(redis_url: str, prefix: str, queue: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a service process on its own key namespace (test task modules importable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "REDIS_"))}
    env.update({
        "REDIS_URL": redis_url,
        "JOBS_KEY_PREFIX": prefix,
        "JOBS_QUEUE": queue,
        "JOBS_TASK_MODULES": "sample_tasks",
        # no empty entry: it would put the current directory on the path, which users' shells do not
        "PYTHONPATH": os.pathsep.join(p for p in (str(TEST_TASKS_DIR), env.get("PYTHONPATH", "")) if p),
        "JOBS_LOG_LEVEL": "INFO",
    })
    env.update(extra or {})
    return env


def start_worker(env: Mapping[str, str], *args: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``jobs-worker`` with ``env``; its own process group so a test can signal it alone."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [str(VENV_BIN / "jobs-worker"), *args], env=dict(env), stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal a process and wait for it; kill its group if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(10)


def python() -> str:
    """The venv's interpreter."""
    return str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
