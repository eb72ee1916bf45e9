"""A private redis-server on a free port, for tests that kill, restart or fill Redis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis
from jobs_core.redis_tuning import redis_server_args


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """Kill and stop for a server process started by a subclass (``self.process``)."""

    process: subprocess.Popen[bytes] | None

    def kill(self) -> None:
        """SIGKILL (a crash: nothing is flushed beyond what the fsync policy wrote)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        """Terminate politely."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


class RedisServer(ServerProcess):
    """``redis-server`` started in ``directory`` (AOF optional), with kill and restart."""

    def __init__(self, directory: Path, *, appendfsync: str | None = None, password: str | None = None,
                 port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH (make install installs it)")
        self.binary = binary
        self.directory = directory
        self.appendfsync = appendfsync
        self.password = password
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start and wait until it answers PING (after loading its AOF)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--daemonize", "no", "--logfile", str(self.directory / "redis.log"),
                *redis_server_args()]  # the settings every Redis we ship runs with
        if self.appendfsync:
            args += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        # its own session: a Ctrl-C meant for the test run must not crash Redis under a scenario
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        client = self.client()
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def client(self) -> redis.Redis:
        """A client for this server."""
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)

    def restart(self, while_down: Callable[[], None] | None = None) -> None:
        """Crash (SIGKILL, if still running), run ``while_down``, start again on the same port and directory."""
        self.kill()
        if while_down is not None:
            while_down()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        path = self.directory / "redis.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
