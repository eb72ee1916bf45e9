"""`make run` (scripts/run_local.py): embedded Redis, API and two workers up; Ctrl-C stops all of it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.stack import ROOT, free_port, http


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(120)
def test_make_run_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("JOBS_", "REDIS_"))}
    env["JOBS_BIND"] = f"127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "run_local.py"), "--run-dir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    banner = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        banner.append(line)
        if line.startswith("  .venv/bin/jobs"):
            break
    text = "".join(banner)
    assert "Jobs API is running" in text, text
    assert f"http://127.0.0.1:{port}/docs" in text and "curl -s -X POST" in text
    redis_port = int(re.search(r"REDIS_URL  redis://127\.0\.0\.1:(\d+)/0", text).group(1))  # type: ignore[union-attr]

    # the printed curl example works, and the job runs on the two workers
    status, _, body = http("POST", f"http://127.0.0.1:{port}/jobs", {"task": "sleep", "params": {"seconds": 0.2}})
    assert status == 202
    job_id = json.loads(body)["id"]
    status, _, body = http("GET", f"http://127.0.0.1:{port}/jobs/{job_id}?wait=20")
    assert json.loads(body)["status"] == "succeeded"
    assert len(list((tmp_path / "logs").glob("worker-*.log"))) == 2

    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert not _listening(port) and not _listening(redis_port)
    for log in (tmp_path / "logs").glob("worker-*.log"):
        assert "stopped" in log.read_text().splitlines()[-1], log  # each worker shut down by itself
