"""A throwaway ``redis-server`` for e2e stacks: free port, AOF ``appendfsync always``, crash/restart."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    """A TCP port nothing listens on right now (bind to 0 and release)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


class RedisServer:
    """``redis-server`` on a free loopback port with its data in ``data_dir``.

    AOF with ``appendfsync always``: every write acknowledged to the API is on disk, so a SIGKILL
    loses nothing (the policy the Kubernetes manifests use; see README "Guarantees").
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not on PATH (scripts/bootstrap.sh installs it)")
        self.binary = binary
        self.data_dir = data_dir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart on the same data directory) and wait until it answers."""
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_port(self.port)
        self._wait_loaded()

    def _wait_loaded(self, timeout: float = 20.0) -> None:
        # The port opens before the AOF is replayed; until then commands answer -LOADING.
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis on {self.port} not ready after {timeout:.0f}s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, like a node or pod crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, while_down: Callable[[], None] | None = None) -> None:
        """Crash, run ``while_down``, start again on the same data directory."""
        self.kill()
        if while_down is not None:
            while_down()
        self.start()

    def stop(self) -> None:
        """Stop for good (teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        path = self.data_dir / "redis.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
