"""The real stack as processes for one scenario: its own redis-server, N workers, the gunicorn API.

Everything started here is stopped by :meth:`Stack.stop` (process groups are killed, so no slot child
or fork server outlives a test), and every log line the services wrote is kept in the work directory
so a scenario can check that no API key or Redis password ever reached a log.
"""

from __future__ import annotations

import os
import random
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import redis
from jobs_core.config import Settings
from jobs_core.store import JobStore
from support.procs import VENV_BIN, service_env
from support.redis_server import RedisServer, free_port

from reliability.http import Http

#: Short lease and reaper interval: recovery is measured in seconds (the bound scales with them).
LEASE_SECONDS = 3.0
REAPER_INTERVAL_SECONDS = 1.0


class Stack:
    """redis-server (optionally AOF) + ``workers`` x ``jobs-worker`` + ``jobs-api`` (gunicorn)."""

    def __init__(
        self,
        workdir: Path,
        *,
        workers: int = 2,
        concurrency: int = 1,
        api: bool = True,
        web_concurrency: int = 2,
        appendfsync: str | None = None,
        extra_env: dict[str, str] | None = None,
        second_queue: bool = False,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis_password = secrets.token_hex(12)
        self.redis = RedisServer(workdir / "redis", appendfsync=appendfsync, password=self.redis_password)
        self.namespace = f"rel{secrets.token_hex(3)}"
        self.n_workers = workers
        self.concurrency = concurrency
        self.with_api = api
        self.web_concurrency = web_concurrency
        self.api_port = free_port()
        #: API keys by name: tenants alpha and beta (operators), alpha's viewer and admin, and the admin of tenant ops
        self.keys = {"alpha": "ka-" + secrets.token_urlsafe(18), "beta": "kb-" + secrets.token_urlsafe(18),
                     "alpha-viewer": "kv-" + secrets.token_urlsafe(18), "admin": "kx-" + secrets.token_urlsafe(18),
                     "alpha-admin": "kaa-" + secrets.token_urlsafe(18)}
        entries = {"alpha": "alpha:{}", "beta": "beta:{}", "alpha-viewer": "alpha:{}:viewer", "admin": "ops:{}:admin",
                   "alpha-admin": "alpha:{}:admin"}
        self.extra_env = {
            "JOBS_LEASE_SECONDS": str(LEASE_SECONDS),
            "JOBS_REAPER_INTERVAL_SECONDS": str(REAPER_INTERVAL_SECONDS),
            "JOBS_DRAIN_SECONDS": "5",
            "JOBS_RETRY_BACKOFF_SECONDS": "0.05",
            "JOBS_RETRY_BACKOFF_MAX_SECONDS": "0.5",
            "JOBS_API_KEYS": ",".join(entries[name].format(key) for name, key in self.keys.items()),
            **(extra_env or {}),
        }
        #: with ``second_queue``: task ``routed`` declares queue ``<namespace>-b``, served by a second group
        #: of workers (every other one) consuming ``<namespace>-b,<namespace>``; the first group consumes
        #: only ``<namespace>`` (and sets ``routed``'s jobs aside if it ever met one)
        self.second_queue = f"{self.namespace}-b" if second_queue else None
        if self.second_queue:
            self.extra_env["TEST_ROUTED_QUEUE"] = self.second_queue
        self.group: dict[int, int] = {}  # worker pid -> group (0 or 1)
        self.workers: list[subprocess.Popen[bytes]] = []
        self.retired: list[subprocess.Popen[bytes]] = []  # stopped/killed workers (their groups are reaped at stop)
        self.api: subprocess.Popen[bytes] | None = None
        self._worker_seq = 0
        self.worker_logs: dict[int, Path] = {}

    # ------------------------------------------------------------------ addresses and clients
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = service_env(self.redis.url, self.namespace, self.namespace, self.extra_env)
        env["JOBS_WORKER_HEALTH_FILE"] = str(self.workdir / "worker.alive")
        return env

    def settings(self) -> Settings:
        return Settings.from_env(self.env())

    def store(self) -> JobStore:
        """A store on this stack's Redis and namespace (the checker's own connection)."""
        return JobStore.from_settings(self.settings())

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis.port, password=self.redis_password, socket_timeout=10)

    def http(self, tenant: str | None = "alpha", timeout: float = 30.0) -> Http:
        """An HTTP client for the API with the key named ``tenant`` (see ``keys``; None = no key)."""
        return Http("127.0.0.1", self.api_port, self.keys[tenant] if tenant else None, timeout=timeout)

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line."""
        return [self.redis_password, *self.keys.values()]

    # ------------------------------------------------------------------ life cycle
    def start(self) -> Stack:
        """Start Redis, the workers and the API; on any failure stop what did start, then raise."""
        try:
            self.redis.start()
            for _ in range(self.n_workers):
                self.start_worker()
            if self.with_api:
                self.start_api()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _popen(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            # its own session: killing the group takes slot children and fork servers with it
            return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=self.workdir)

    @property
    def queues(self) -> list[str]:
        """Every queue of the stack (the default one first)."""
        return [self.namespace, *([self.second_queue] if self.second_queue else [])]

    def start_worker(self, like: subprocess.Popen[bytes] | None = None) -> subprocess.Popen[bytes]:
        """Start a worker (in the group of ``like``, a worker it replaces; else groups alternate)."""
        self._worker_seq += 1
        group = self.group.get(like.pid, 0) if like is not None else (self._worker_seq + 1) % 2
        log = self.workdir / f"worker-{self._worker_seq}.log"
        argv = [str(VENV_BIN / "jobs-worker"), "run", "--concurrency", str(self.concurrency)]
        if self.second_queue and group == 1:
            argv += ["--queues", f"{self.second_queue},{self.namespace}"]
        proc = self._popen(argv, self.env(), log)
        self.group[proc.pid] = group
        self.worker_logs[proc.pid] = log
        self.workers.append(proc)
        return proc

    def start_api(self) -> None:
        env = {**self.env(), "JOBS_BIND": f"127.0.0.1:{self.api_port}", "WEB_CONCURRENCY": str(self.web_concurrency),
               "JOBS_API_GRACEFUL_TIMEOUT": "5"}
        self.api = self._popen([str(VENV_BIN / "jobs-api")], env, self.workdir / "api.log")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every worker has published its tasks and the API (if any) answers /readyz with 200."""
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            self.check_alive()
            try:
                tasks_ok = client.hexists(f"{self.namespace}:tasks", "sleep") or not self.workers
                api_ok = True
                if self.with_api:
                    api_ok = self.http(None, timeout=2).request("GET", "/readyz").status == 200
                if tasks_ok and api_ok:
                    return
            except (OSError, redis.RedisError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"stack not ready after {timeout:.0f}s\n{self.log_tail()}")
            time.sleep(0.1)

    def check_alive(self) -> None:
        """Fail when a service process we did not stop has exited."""
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop everything: workers and API politely, then kill whatever is left of their groups."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        if self.api is not None and self.api.poll() is None:
            self.api.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in [*self.workers, *([self.api] if self.api else [])]:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in [*self.workers, *self.retired, *([self.api] if self.api else [])]:
            _kill_group(proc)
        self.workers.clear()
        self.redis.stop()

    # ------------------------------------------------------------------ chaos
    def ready_workers(self) -> list[subprocess.Popen[bytes]]:
        """Workers that have heartbeated (their id, ``host:pid:rand``, is in the workers zset)."""
        pids = {w.decode().split(":")[1] for w in self.client().zrange(f"{self.namespace}:workers", 0, -1)}
        return [p for p in self.workers if str(p.pid) in pids and p.poll() is None]

    def random_worker(self, *, spare: bool = False) -> subprocess.Popen[bytes] | None:
        """A random worker that is up and running (a rollout replaces ready pods, not starting ones); with
        ``spare``, only one whose group keeps another ready worker (its queues are never left to a worker
        still booting: how long a boot takes under load is not what a recovery bound measures)."""
        ready = self.ready_workers()
        if spare:
            per_group = [self.group.get(p.pid, 0) for p in ready]
            ready = [p for p, g in zip(ready, per_group, strict=True) if per_group.count(g) >= 2]
        return random.choice(ready) if ready else None

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker and its children (as the OOM killer or a node loss would)."""
        self.workers.remove(proc)
        self.retired.append(proc)
        _kill_group(proc)

    def terminate_worker(self, proc: subprocess.Popen[bytes], *, twice: bool = False) -> None:
        """SIGTERM a worker (a rollout or scale-in); ``twice``: a second signal hands back at once."""
        self.workers.remove(proc)
        self.retired.append(proc)
        proc.send_signal(signal.SIGTERM)
        if twice:
            time.sleep(0.05)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def api_worker_pids(self) -> list[int]:
        """PIDs of the gunicorn worker processes (children of the master)."""
        assert self.api is not None
        return _children(self.api.pid)

    # ------------------------------------------------------------------ logs
    def logs(self) -> dict[str, str]:
        return {p.name: p.read_text(errors="replace") for p in sorted(self.workdir.glob("*.log"))} | {
            "redis.log": (self.workdir / "redis" / "redis.log").read_text(errors="replace")
            if (self.workdir / "redis" / "redis.log").exists() else ""
        }

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(f"--- {name}\n" + "\n".join(text.splitlines()[-lines:]) for name, text in self.logs().items())

    def leaked_secrets(self) -> list[str]:
        """``file: line`` for every log line containing an API key or the Redis password."""
        found = []
        for name, text in self.logs().items():
            for line in text.splitlines():
                if any(s in line for s in self.secrets()):
                    found.append(f"{name}: {line[:200]}")
        return found

    def assert_clean(self, client_server_errors: int = 0) -> None:
        """The closing checks of a scenario: no 5xx other than 503 answered to its clients
        (``client_server_errors``, their own count) or in the API's log, no unhandled error, no secret in
        any log."""
        errors = self.server_errors_in_logs()
        assert client_server_errors == 0 and not errors, (client_server_errors, errors[:5])
        leaks = self.leaked_secrets()
        assert not leaks, leaks[:5]

    def server_errors_in_logs(self) -> list[str]:
        """Access-log and error-log lines of 5xx answers other than 503, and unhandled-error log lines
        (503 is the promised answer while Redis is down)."""
        found = []
        for line in self.logs().get("api.log", "").splitlines():
            status = re.search(r'"status":\s*(\d+)', line)
            if (status and status.group(1).startswith("5") and status.group(1) != "503") or "unhandled error" in line:
                found.append(line[:300])
        return found


def _kill_group(proc: subprocess.Popen[Any]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out
