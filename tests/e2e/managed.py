"""Stacks the test itself runs on this machine: its own Redis, one API, a pool of workers.

:class:`ManagedStack` holds the shared chaos logic; subclasses say how to start an API or a worker
(:class:`LocalStack`: processes from the venv; the container tests: ``docker run``).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from e2e.api_client import Api
from e2e.redis_server import RedisServer, free_port
from e2e.scenarios import Stack

#: Short lease and reaper interval so recovery scenarios take seconds, not half a minute.
FAST_RECOVERY_ENV = {
    "JOBS_LEASE_SECONDS": "5",
    "JOBS_REAPER_INTERVAL_SECONDS": "1",
    "JOBS_DRAIN_SECONDS": "10",
    "JOBS_RETRY_BACKOFF_SECONDS": "0.2",
    "JOBS_LOG_LEVEL": "INFO",
}


class Handle:
    """One started component: a process (local) or a container (docker)."""

    def __init__(self, name: str, ident: Any, log: Path) -> None:
        self.name = name
        self.ident = ident
        self.log = log


class ManagedStack(Stack):
    """Redis + API + ``workers`` workers, all started and torn down by the test."""

    recovery_seconds = 5 + 1 + 10.0  # lease + reaper interval + slack

    def __init__(self, workdir: Path, workers: int = 2, api_key: str | None = None) -> None:
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis")
        self.api_port = free_port()
        self.n_workers = workers
        self.slots = workers
        self.workers: list[Handle] = []
        self.api_handle: Handle | None = None
        self._spawned = 0
        super().__init__(f"http://127.0.0.1:{self.api_port}", api_key or secrets.token_urlsafe(16))

    # -------------------------------------------------------------- what subclasses provide
    def spawn_api(self, env: dict[str, str], log: Path) -> Handle:
        raise NotImplementedError

    def spawn_worker(self, env: dict[str, str], log: Path, index: int) -> Handle:
        raise NotImplementedError

    def kill_handle(self, h: Handle) -> None:
        """SIGKILL everything in the component (the worker and its slot children)."""
        raise NotImplementedError

    def stop_handle(self, h: Handle, timeout: float) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, SIGKILL if still alive; the exit code."""
        raise NotImplementedError

    def worker_matches(self, h: Handle, worker_id: str) -> bool:
        """Whether the job's ``worker`` field names this component (False when it cannot tell)."""
        return False

    # -------------------------------------------------------------- life cycle
    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis.url,
            "JOBS_API_KEYS": f"e2e:{self.api_key}",
            **FAST_RECOVERY_ENV,
        }

    def start(self) -> None:
        self.redis.start()
        self.api_handle = self.spawn_api(
            {**self.env(), "JOBS_BIND": f"127.0.0.1:{self.api_port}", "WEB_CONCURRENCY": "2"},
            self.workdir / "api.log",
        )
        for _ in range(self.n_workers):
            self.start_worker()
        self.wait_ready()

    def __enter__(self) -> Self:
        """Start the stack; what did start is stopped again when it does not become ready."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /readyz is 200 and every worker has published its tasks (GET /tasks lists sleep)."""
        api = Api(self.base_url, self.api_key, timeout=5)
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                ready = api.request("GET", "/readyz", auth=False)
                tasks = api.request("GET", "/tasks")
                last = (str(ready), str(tasks))
                if ready.status == 200 and tasks.status == 200 and any(
                    t["name"] == "sleep" for t in tasks.json()["tasks"]
                ):
                    return
            except OSError as e:
                last = repr(e)
            time.sleep(0.2)
        raise AssertionError(f"{self.name} stack not ready after {timeout:.0f}s: {last}\n{self.logs()}")

    def start_worker(self, extra_env: dict[str, str] | None = None) -> Handle:
        """Start one more worker (``extra_env`` overrides the stack's settings for it)."""
        self._spawned += 1
        index = self._spawned
        h = self.spawn_worker({**self.env(), **(extra_env or {})}, self.workdir / f"worker-{index}.log", index)
        self.workers.append(h)
        return h

    def stop(self) -> None:
        for h in [*self.workers, *([self.api_handle] if self.api_handle else [])]:
            try:
                self.stop_handle(h, 15)
            except Exception as e:  # teardown must reach Redis whatever happened
                print(f"stopping {h.name}: {e!r}", file=sys.stderr)
        self.workers.clear()
        self.redis.stop()

    # -------------------------------------------------------------- capabilities
    def kill_worker_running(self, job: dict[str, Any]) -> None:
        worker_id = str(job.get("worker") or "")
        victims = [h for h in self.workers if self.worker_matches(h, worker_id)] or list(self.workers)
        for h in victims:  # cannot tell which one runs it -> kill them all (still "killed mid-job")
            self.kill_handle(h)
            self.workers.remove(h)
        for _ in victims:
            self.start_worker()

    def restart_redis(self, while_down: Callable[[], None] | None = None) -> None:
        self.redis.restart(while_down)

    def logs(self) -> str:
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {path.name}\n" + "\n".join(lines))
        parts.append("--- redis\n" + self.redis.log_tail())
        return "\n".join(parts)


class LocalStack(ManagedStack):
    """The stack as plain processes: ``jobs-api`` (gunicorn) and ``jobs-worker`` from this venv."""

    name = "local-process"

    def _bin(self, name: str) -> str:
        path = Path(sys.executable).parent / name
        if not path.exists():
            raise RuntimeError(f"{path} missing: run `make install`")
        return str(path)

    def _popen(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - handed to the child
        try:
            # Own session: SIGKILL to the group takes the slot children too (like a container kill).
            return subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, cwd=self.workdir)
        finally:
            out.close()

    def spawn_api(self, env: dict[str, str], log: Path) -> Handle:
        return Handle("api", self._popen([self._bin("jobs-api")], env, log), log)

    def spawn_worker(self, env: dict[str, str], log: Path, index: int) -> Handle:
        return Handle(f"worker-{index}", self._popen([self._bin("jobs-worker"), "run"], env, log), log)

    def worker_matches(self, h: Handle, worker_id: str) -> bool:
        parts = worker_id.split(":")
        return len(parts) >= 2 and parts[1] == str(h.ident.pid)

    def kill_handle(self, h: Handle) -> None:
        proc: subprocess.Popen[bytes] = h.ident
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)

    def stop_handle(self, h: Handle, timeout: float) -> int | None:
        proc: subprocess.Popen[bytes] = h.ident
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_handle(h)
        try:  # leftovers of the group (a slot child that outlived its parent) must not leak
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return proc.returncode
