"""A real local stack for end-to-end tests: ``jobs-api`` (gunicorn, several workers) and ``jobs-worker``
processes on their own key namespace of the test Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from jobs_core.config import Settings
from jobs_core.store import JobStore
from support.http_response import encode_request

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request; any status is returned, not raised."""
    data, hdrs = encode_request(body, None, headers)
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class ApiStack:
    """Redis namespace + gunicorn API + workers, started and stopped by a test fixture."""

    def __init__(self, workdir: Path, redis_url: str, *, workers: int = 2, web_concurrency: int = 2,
                 api_keys: str | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.namespace = f"e{uuid.uuid4().hex[:10]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.n_workers = workers
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "REDIS_", "PROMETHEUS_"))}
        self.env.update({
            "REDIS_URL": redis_url,
            "JOBS_KEY_PREFIX": self.namespace,
            "JOBS_QUEUE": self.namespace,
            "JOBS_BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": str(web_concurrency),
            "JOBS_LEASE_SECONDS": "3",
            "JOBS_REAPER_INTERVAL_SECONDS": "1",
            "JOBS_DRAIN_SECONDS": "2",
            "JOBS_RETRY_BACKOFF_SECONDS": "0.1",
            "TMPDIR": str(workdir),  # the API's metrics directory lands here (checked after shutdown)
        })
        if api_keys:
            self.env["JOBS_API_KEYS"] = api_keys
        self.env.update(extra_env or {})
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def access_log(self) -> Path:
        return self.workdir / "api.out"

    @property
    def error_log(self) -> Path:
        return self.workdir / "api.err"

    def start_api(self) -> None:
        """Start (or start again) the API process."""
        with open(self.access_log, "ab") as out, open(self.error_log, "ab") as err:
            self.api = subprocess.Popen([str(BIN / "jobs-api")], env=self.env, stdout=out, stderr=err,
                                        start_new_session=True)

    def stop_api(self) -> int:
        """SIGTERM the API and wait for it; its exit code."""
        assert self.api is not None
        self.api.send_signal(signal.SIGTERM)
        return self.api.wait(30)

    def start(self) -> ApiStack:
        self.start_api()
        for i in range(self.n_workers):
            wenv = dict(self.env, JOBS_WORKER_HEALTH_FILE=str(self.workdir / f"worker-{i}.alive"))
            with open(self.workdir / f"worker-{i}.log", "ab") as log:
                self.workers.append(subprocess.Popen([str(BIN / "jobs-worker")], env=wenv, stdout=log,
                                                     stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"jobs-api exited: {self.error_log.read_text()[-2000:]}")
            try:
                status, _, _ = http("GET", self.url + "/readyz", timeout=2)
                if status == 200 and (not self.n_workers or self._tasks_published()):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the stack did not become ready in 30s")

    def __enter__(self) -> ApiStack:
        """Start the stack (stopped again when it does not become ready, so no process outlives the test)."""
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def store(self) -> JobStore:
        """A JobStore on the stack's key namespace and queue (to publish tasks or look behind the API)."""
        env = {k: self.env[k] for k in ("REDIS_URL", "JOBS_KEY_PREFIX", "JOBS_QUEUE")}
        return JobStore.from_settings(Settings.from_env(env))

    def _tasks_published(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        return bool(client.hlen(f"{self.namespace}:tasks"))

    def stop(self) -> int | None:
        """SIGTERM everything; return the API's exit code."""
        procs = [p for p in (*self.workers, self.api) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self._cleanup_keys()
        return self.api.returncode if self.api else None

    def _cleanup_keys(self) -> None:
        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        # the queue's lists: hotqueue:<ns> and one per other priority (hotqueue:<ns>:p9 ...)
        keys = [*client.scan_iter(f"{self.namespace}:*", count=1000),
                *client.scan_iter(f"hotqueue:{self.namespace}*", count=1000)]
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
