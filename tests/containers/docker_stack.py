"""The e2e stack as containers: the built images run ``--network host --read-only --tmpfs /tmp`` as
their non-root user against a test ``redis-server`` on this host."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

from e2e.managed import Handle, ManagedStack

RUN_FLAGS = ["--network", "host", "--read-only", "--tmpfs", "/tmp:rw,size=64m", "--user", "10001:10001",
             "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI, capturing output; raise with its stderr when ``check`` and it fails."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


class DockerStack(ManagedStack):
    """API and worker containers from ``api_image`` / ``worker_image``; Redis is a host process."""

    name = "container"

    def __init__(self, workdir: Path, api_image: str, worker_image: str, workers: int = 2) -> None:
        super().__init__(workdir, workers=workers)
        self.api_image = api_image
        self.worker_image = worker_image
        self.prefix = f"jobs-e2e-{secrets.token_hex(3)}"

    def _run(self, name: str, image: str, env: dict[str, str], *extra: str) -> str:
        env_flags = [f for k, v in env.items() for f in ("-e", f"{k}={v}")]
        # --hostname names the worker in its id (host:pid:random) so a kill can pick the right one.
        # A 1 s health interval so tests can see the images' HEALTHCHECKs pass without waiting 15 s.
        docker("run", "-d", "--name", name, "--hostname", name, "--health-interval", "1s",
               "--health-start-period", "30s", *RUN_FLAGS, *env_flags, image, *extra)
        return name

    def spawn_api(self, env: dict[str, str], log: Path) -> Handle:
        return Handle("api", self._run(f"{self.prefix}-api", self.api_image, env), log)

    def spawn_worker(self, env: dict[str, str], log: Path, index: int) -> Handle:
        name = self._run(f"{self.prefix}-worker-{index}", self.worker_image, env, "run")
        h = Handle(f"worker-{index}", name, log)
        self._wait_started(h)
        return h

    def _wait_started(self, h: Handle, timeout: float = 60.0) -> None:
        # The worker is PID 1: until Python has installed its SIGTERM handler, the kernel drops a
        # SIGTERM sent to it (PID 1 has no default action), so `docker stop` in that first second would
        # wait for the SIGKILL. Tests stop workers only once they have announced themselves.
        deadline = time.monotonic() + timeout
        while "worker started" not in (out := docker("logs", h.ident, check=False)).stdout + out.stderr:
            if time.monotonic() > deadline:
                raise AssertionError(f"{h.ident} did not start:\n{out.stdout}{out.stderr}")
            time.sleep(0.1)

    def worker_matches(self, h: Handle, worker_id: str) -> bool:
        return worker_id.split(":", 1)[0] == h.ident

    def _save_log(self, h: Handle) -> None:
        out = docker("logs", "--tail", "200", h.ident, check=False)
        h.log.write_text(out.stdout + out.stderr)

    def kill_handle(self, h: Handle) -> None:
        docker("kill", "--signal", "KILL", h.ident, check=False)
        self._save_log(h)
        docker("rm", "-f", h.ident, check=False)

    def stop_handle(self, h: Handle, timeout: float) -> int | None:
        """``docker stop -t timeout`` (SIGTERM, then SIGKILL); the container's exit code."""
        docker("stop", "-t", str(int(timeout)), h.ident, check=False, timeout=timeout + 30)
        code = docker("inspect", "-f", "{{.State.ExitCode}}", h.ident, check=False).stdout.strip()
        self._save_log(h)
        docker("rm", "-f", h.ident, check=False)
        return int(code) if code.lstrip("-").isdigit() else None

    def health(self, h: Handle) -> str:
        """Docker's view of the image HEALTHCHECK: starting, healthy or unhealthy."""
        return docker("inspect", "-f", "{{.State.Health.Status}}", h.ident, check=False).stdout.strip()

    def logs(self) -> str:
        for h in [*self.workers, *([self.api_handle] if self.api_handle else [])]:
            self._save_log(h)
        return super().logs()
