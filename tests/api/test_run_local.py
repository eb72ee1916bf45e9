"""`make run` (scripts/run_local.py): embedded Redis, API and two workers up; Ctrl-C stops all of it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs_core.config import Settings
from jobs_core.model import JobStatus
from jobs_core.redis_tuning import HASH_MAX_LISTPACK_VALUE
from jobs_core.store import JobStore

from api.stack import ROOT, free_port, http


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(120)
def test_make_run_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "REDIS_"))}
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
    # the embedded Redis runs the settings every Redis we ship does: the finished record stays a listpack
    embedded = JobStore.from_settings(Settings(redis_url=f"redis://127.0.0.1:{redis_port}/0"))
    assert embedded.redis.config_get("hash-max-listpack-value") == {
        "hash-max-listpack-value": str(HASH_MAX_LISTPACK_VALUE)}
    assert embedded.redis.object("encoding", embedded.keys.job(job_id)) == b"listpack"

    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert not _listening(port) and not _listening(redis_port)
    for log in (tmp_path / "logs").glob("worker-*.log"):
        assert "stopped" in log.read_text().splitlines()[-1], log  # each worker shut down by itself


class RunLocal:
    """A real `make run` (scripts/run_local.py) whose merged output is read line by line as it comes."""

    def __init__(self, env: dict[str, str], run_dir: Path, cwd: Path = ROOT) -> None:
        import queue
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "run_local.py"), "--run-dir", str(run_dir)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=cwd,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")  # end of output

    def wait_line(self, pattern: str, timeout: float) -> str:
        """The first line (from now on) matching ``pattern``; fails with all output seen on timeout/exit."""
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is not None:
                self.seen.append(line)
            if line and re.search(pattern, line):
                return line
            if line == "" or time.monotonic() > deadline:
                pytest.fail(f"no line matching {pattern!r}; output:\n{''.join(self.seen)[-4000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def run_env(redis_url: str, namespace: str) -> dict[str, str]:
    """`make run` on the test Redis (so jobs can be checked after it stopped), a free API port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "REDIS_", "PROMETHEUS_"))}
    env.update({"REDIS_URL": redis_url, "JOBS_KEY_PREFIX": namespace, "JOBS_QUEUE": namespace,
                "JOBS_BIND": f"127.0.0.1:{free_port()}"})
    return env


def _submit_running(base: str, headers: dict[str, str], seconds: float, store: JobStore) -> str:
    status, _, body = http("POST", f"{base}/jobs", {"task": "sleep", "params": {"seconds": seconds}}, headers)
    assert status == 202, body
    job_id: str = json.loads(body)["id"]
    deadline = time.monotonic() + 30
    while store.get(job_id).status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.1)
    return job_id


@pytest.mark.timeout(180)
def test_ctrl_c_says_what_it_waits_for_and_a_second_ctrl_c_hands_back_at_once(
    run_env: dict[str, str], tmp_path: Path, store: JobStore
) -> None:
    """Issue 9 defects 8 and 11: Ctrl-C with a job running names the job and the drain time left; a second
    Ctrl-C hands it back at once (even with a long JOBS_DRAIN_SECONDS); the banner shows the key header."""
    key = "dev-secret-key-123"
    env = dict(run_env, JOBS_DRAIN_SECONDS="90", JOBS_API_KEYS=f"dev:{key}")
    run = RunLocal(env, tmp_path)
    try:
        banner_start = len(run.seen)
        run.wait_line(r"^  \.venv/bin/jobs", 90)
        banner = "".join(run.seen[banner_start:])
        assert 'Authorization: Bearer $JOBS_API_KEY' in banner and "tenants: dev" in banner, banner
        assert key not in banner  # the banner shows the header, never a key
        base = f"http://{env['JOBS_BIND']}"
        job_id = _submit_running(base, {"Authorization": f"Bearer {key}"}, 120, store)

        run.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        waiting = run.wait_line(r"waiting up to", 30)
        assert job_id in waiting and "sleep" in waiting, waiting
        left = int(re.search(r"waiting up to (\d+)s more", waiting).group(1))  # type: ignore[union-attr]
        assert 60 < left <= 90, waiting  # the drain time left, from JOBS_DRAIN_SECONDS=90
        assert "Ctrl-C again" in waiting

        run.proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        run.wait_line(r"handing the running jobs back", 30)
        assert run.proc.wait(60) == 0
        assert time.monotonic() - sent < 45, "a second Ctrl-C must not wait for the 90 s drain"
        job = store.get(job_id)
        assert job.status is JobStatus.QUEUED and job.attempts == 0, job  # handed back, no attempt charged
    finally:
        run.stop()


@pytest.mark.timeout(180)
def test_make_run_drains_briefly_by_default(run_env: dict[str, str], tmp_path: Path, store: JobStore) -> None:
    """Issue 9 defect 8: one Ctrl-C with a long job running ends within make run's short drain (5 s),
    not the production 25 s; the job is handed back."""
    run = RunLocal(run_env, tmp_path)
    try:
        run.wait_line(r"^  \.venv/bin/jobs", 90)
        job_id = _submit_running(f"http://{run_env['JOBS_BIND']}", {}, 120, store)
        run.proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        assert run.proc.wait(60) == 0
        took = time.monotonic() - sent
        assert took < 22, f"make run took {took:.1f}s to stop: longer than its 5 s drain allows"
        assert store.get(job_id).status is JobStatus.QUEUED
    finally:
        run.stop()


TASK_MODULE = '''
from jobs_worker import task


@task("greet", params_schema={{"type": "object"}})
def greet(params, ctx):
    """Say which version of this file ran."""
    return "{version}"
'''


def _result_of_greet(base: str, timeout: float = 60) -> str:
    status, _, body = http("POST", f"{base}/jobs", {"task": "greet", "params": {}})
    assert status == 202, body
    job_id = json.loads(body)["id"]
    status, _, body = http("GET", f"{base}/jobs/{job_id}?wait={min(60, timeout):g}", timeout=timeout + 30)
    job = json.loads(body)
    assert job["status"] == "succeeded", job
    status, _, body = http("GET", f"{base}/jobs/{job_id}/result")
    result: str = json.loads(body)
    return result


@pytest.mark.timeout(240)
def test_reload_restarts_the_workers_when_a_task_module_changes(run_env: dict[str, str], tmp_path: Path) -> None:
    """The dev loop: `JOBS_TASK_MODULES=mytasks JOBS_RELOAD=1 make run` started beside mytasks.py runs the
    user's tasks and, when the file is saved, restarts the workers on the new code; a file that does not
    import leaves the API up and the next good save brings the workers back."""
    project = tmp_path / "project"
    project.mkdir()
    module = project / "mytasks.py"
    module.write_text(TASK_MODULE.format(version="v1"))
    env = dict(run_env, JOBS_TASK_MODULES="mytasks", JOBS_RELOAD="1")
    env.pop("PYTHONPATH", None)
    run = RunLocal(env, tmp_path / "run", cwd=project)
    base = f"http://{env['JOBS_BIND']}"
    try:
        start = len(run.seen)
        run.wait_line(r"^  \.venv/bin/jobs", 90)
        banner = "".join(run.seen[start:])
        assert "mytasks (JOBS_TASK_MODULES)" in banner and "reload     on" in banner and str(module) in banner
        assert _result_of_greet(base) == "v1"

        module.write_text(TASK_MODULE.format(version="v2"))
        run.wait_line(r"mytasks\.py changed: restarting the workers", 30)
        run.wait_line(r"workers restarted", 60)
        assert _result_of_greet(base) == "v2"

        module.write_text("this is not python (\n")  # a save in the middle of an edit
        run.wait_line(r"restarting the workers", 30)
        run.wait_line(r"fix the task module and save it", 60)
        assert http("GET", f"{base}/readyz")[0] == 200  # the API stays up meanwhile
        assert run.proc.poll() is None

        module.write_text(TASK_MODULE.format(version="v3"))
        run.wait_line(r"workers restarted", 60)
        assert _result_of_greet(base) == "v3"
    finally:
        run.stop()


GPU_MODULE = '''
from jobs_worker import task


@task("render", queue="gpu", params_schema={"type": "object"})
def render(params, ctx):
    """A task of the second pool: it runs only on workers that consume the gpu queue."""
    return {"rendered": True}
'''


@pytest.mark.timeout(240)
def test_a_second_pool_beside_make_run_runs_its_own_queue(run_env: dict[str, str], tmp_path: Path,
                                                         namespace: str, store: JobStore) -> None:
    """Issue 11 §7, as the README's "A second pool with make run" says: make run's workers are the default
    pool; a worker started beside it with JOBS_QUEUES=gpu and its own task module is a second pool, and
    the API routes the task's jobs to it (never to the default pool, which lacks the task)."""
    folder = tmp_path / "pool"
    folder.mkdir()
    (folder / "gputasks.py").write_text(GPU_MODULE)
    run = RunLocal(run_env, tmp_path)
    pool: subprocess.Popen[bytes] | None = None
    try:
        run.wait_line(r"^  \.venv/bin/jobs", 90)
        base = f"http://{run_env['JOBS_BIND']}"
        # the README's command, from the folder holding the module, on make run's Redis
        env = dict(run_env, JOBS_QUEUES="gpu", JOBS_TASK_MODULES="gputasks",
                   JOBS_WORKER_HEALTH_FILE=str(tmp_path / "gpu.alive"))
        pool = subprocess.Popen([str(ROOT / ".venv/bin/jobs-worker")], cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            status, _, body = http("POST", f"{base}/jobs", {"task": "render", "params": {}})
            if status == 202:
                break
            assert status == 422 and time.monotonic() < deadline, body  # until the pool published the task
            time.sleep(0.3)
        job = json.loads(body)
        assert job["queue"] == "gpu"
        status, _, body = http("GET", f"{base}/jobs/{job['id']}?wait=30", timeout=60)
        done = json.loads(body)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1
        queues = {q["name"]: q for q in json.loads(http("GET", f"{base}/queues")[2])["queues"]}
        assert queues["gpu"]["workers"], queues["gpu"]  # the second pool is seen consuming its queue
    finally:
        if pool is not None and pool.poll() is None:
            os.killpg(pool.pid, signal.SIGTERM)
            pool.wait(30)
        run.stop()
