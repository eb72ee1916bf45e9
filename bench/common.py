"""Shared helpers for every benchmark driver: a private redis-server, timing, percentiles, process RSS.

Importable from both virtualenvs (.venv for our system, .venv-bench for the peers): only the stdlib and
``redis`` are used here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
OUR_PY = str(ROOT / ".venv" / "bin" / "python")
BENCH_PY = str(ROOT / ".venv-bench" / "bin" / "python")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(argv: Sequence[str], cpus: set[int] | None) -> list[str]:
    """``argv`` run on ``cpus`` only, it and every process and thread it starts (``taskset`` sets the
    affinity before the exec, so nothing escapes it; the smoke run starts drivers from threads, where a
    ``preexec_fn`` is unsafe); unchanged without ``cpus``."""
    if not cpus:
        return list(argv)
    return ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus))), *argv]


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(Redis's CPU, everybody else's) for the pinned measurement: the first CPU this process may use for
    Redis alone, the rest for the workers, the producer and the harness; None with fewer than 2 CPUs or
    without ``taskset`` (util-linux)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return None
    return {cpus[0]}, set(cpus[1:])


class PrivateRedis:
    """A throwaway ``redis-server`` (no persistence) on a free loopback port, shared by every system in a run.

    With ``cpus`` the server may run on those CPUs only (:func:`pinned`): the pinned measurement
    gives it a core of its own, the way a cluster's Redis primary has one, while the drivers run pinned
    to the other cores (:func:`run_driver`).
    """

    def __init__(self, cpus: set[int] | None = None) -> None:
        # started by bench.run in .venv (jobs_core is there; this module stays importable from .venv-bench)
        from jobs_core.redis_tuning import redis_server_args

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench: redis-server is not on PATH (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix="jobs-bench-redis-")
        self.port = free_port()
        self.cpus = cpus
        self.process = subprocess.Popen(pinned(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--logfile", os.path.join(self.dir, "redis.log"), "--maxclients", "4000",
             "--databases", "64", *redis_server_args()], cpus),  # the shipped settings (jobs_core.redis_tuning)
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return self.db_url(0)

    def db_url(self, db: int) -> str:
        """URL of one logical database (the smoke run gives each driver its own and runs them at once)."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisCost:
    """Redis-side cost between two snapshots: commands (scripts' inner ones included), client reads
    (round trips), CPU time, how busy that kept the server, and memory."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.r.config_resetstat()
        self.start = self._snap()

    def _snap(self) -> dict[str, float]:
        info = self.r.info("all")
        calls = {k[len("cmdstat_"):]: v["calls"] for k, v in info.items() if k.startswith("cmdstat_")}
        return {
            "commands": float(sum(calls.values())),
            "reads": float(info["total_reads_processed"]),
            "cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
            "sys": float(info["used_cpu_sys"]),  # the kernel's share: syscalls, wake-ups, loopback TCP
            "memory": float(info["used_memory"]),
            "wall": time.monotonic(),
            "calls": calls,  # type: ignore[dict-item]
        }

    def per_job(self, jobs: int, own_round_trips: int = 0, own_commands: int = 0) -> dict[str, Any]:
        """Cost per job since the start; the round trips and commands made by the harness's own polling
        (``own_round_trips``, ``own_commands``) are taken off."""
        end = self._snap()
        calls_end: dict[str, float] = end["calls"]  # type: ignore[assignment]
        calls_start: dict[str, float] = self.start["calls"]  # type: ignore[assignment]
        per_cmd = {k: round((v - calls_start.get(k, 0)) / jobs, 3) for k, v in calls_end.items()
                   if v - calls_start.get(k, 0) > 0 and k not in ("info", "config|resetstat", "config")}
        return {
            "commands": max(0.0, end["commands"] - self.start["commands"] - own_commands) / jobs,
            "round_trips": max(0.0, end["reads"] - self.start["reads"] - own_round_trips) / jobs,
            "redis_cpu_us": (end["cpu"] - self.start["cpu"]) * 1e6 / jobs,
            "redis_sys_us": (end["sys"] - self.start["sys"]) * 1e6 / jobs,
            # share of one core the server used meanwhile: far below 1, each call finds it asleep and pays
            # the wake-up (epoll, a read per call) that a saturated server shares between calls
            "redis_busy": (end["cpu"] - self.start["cpu"]) / max(1e-9, end["wall"] - self.start["wall"]),
            "memory_bytes": (end["memory"] - self.start["memory"]) / jobs,
            "by_command": dict(sorted(per_cmd.items(), key=lambda kv: -kv[1])),
        }


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p90 and p99 (nearest rank) of latencies in milliseconds."""
    data = sorted(samples_ms)
    if not data:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan")}

    def rank(p: float) -> float:
        return data[min(len(data) - 1, max(0, round(p / 100 * len(data) + 0.5) - 1))]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99)}


def measure_drain(
    queue_len: Callable[[], int], all_done: Callable[[], bool], jobs: int, *, timeout: float = 600.0
) -> dict[str, float]:
    """Drain rate of ``jobs`` queued jobs once workers have started.

    Uniform for every system so that start-up (imports, forks, connections) is not counted: the clock
    starts when the queue has shrunk by a 2% warm-up, and stops when every job's result is stored.
    ``rate = queued at start / elapsed``. Prefetching systems take a few dozen jobs early; against
    thousands of jobs that error is well under 1%.
    """
    warm = max(1, min(200, jobs // 50))
    deadline = time.monotonic() + timeout
    t0 = 0.0
    left0 = jobs
    while True:
        n = queue_len()
        if n <= jobs - warm:
            t0 = time.perf_counter()
            left0 = n
            break
        if time.monotonic() > deadline:
            raise TimeoutError("workers never started taking jobs")
        time.sleep(0.001)
    while queue_len() > 0:
        if time.monotonic() > deadline:
            raise TimeoutError("drain did not finish")
        time.sleep(0.002)
    while not all_done():
        if time.monotonic() > deadline:
            raise TimeoutError("results never all stored")
        time.sleep(0.002)
    elapsed = time.perf_counter() - t0
    return {"rate": left0 / elapsed if elapsed > 0 else float("nan"), "elapsed": elapsed, "counted": left0}


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return total / (1024 * 1024)


@dataclass
class Procs:
    """Worker processes started for one measurement; stopped (whole process groups) at the end."""

    procs: list[subprocess.Popen[bytes]]

    @classmethod
    def start(cls, argv: Sequence[str], count: int, env: dict[str, str] | None = None) -> Procs:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        procs = [
            subprocess.Popen(list(argv), cwd=ROOT, env=full_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
            for _ in range(count)
        ]
        return cls(procs)

    def rss_mb(self) -> float:
        return sum(tree_rss_mb(p.pid) for p in self.procs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def emit(result: dict[str, object]) -> None:
    """Print a driver's result as the last line of stdout (the orchestrator reads it)."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def run_driver(python: str, module: str, args: Sequence[str], timeout: float = 900,
               cpus: set[int] | None = None) -> dict[str, object]:
    """Run ``python -m module args`` from the repo root and return the JSON it printed last; with ``cpus``
    the driver and every process it starts (workers, slot children) run on those CPUs only."""
    proc = subprocess.run(
        pinned([python, "-m", module, *args], cpus), cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=timeout,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(lines[-1])
    return result
