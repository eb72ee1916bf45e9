"""Writing your own tasks, as a user does: a module in a folder of your own, a real worker started there.

Regression tests of issue 9: task modules found from the current directory or by file path (and a clear
error when not), invalid tasks refused at start, logs from tasks as JSON lines, non-JSON results not
retried, the last progress message kept, per-task retry policy, and ``ctx``.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from support.procs import VENV_BIN, stop, wait_for

HEADER = "from jobs_worker import Context, task\n"


def write_module(folder: Path, source: str, name: str = "mytasks") -> Path:
    """``folder/<name>.py`` with ``source`` (dedented)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(HEADER + textwrap.dedent(source))
    return path


def worker_in(folder: Path, env: dict[str, str], modules: str, *args: str,
              log: Path | None = None) -> subprocess.Popen[bytes]:
    """``JOBS_TASK_MODULES=<modules> jobs-worker <args>`` started from ``folder``, as the README says."""
    out = open(log, "ab") if log else subprocess.PIPE  # noqa: SIM115 - closed with the process
    return subprocess.Popen([str(VENV_BIN / "jobs-worker"), *args], cwd=folder,
                            env={**env, "JOBS_TASK_MODULES": modules}, stdout=out, stderr=subprocess.PIPE,
                            start_new_session=True)


def burst(folder: Path, env: dict[str, str], modules: str = "mytasks", **extra: str) -> tuple[int, str, str]:
    """Run a burst worker from ``folder``: exit code, stdout, stderr."""
    proc = subprocess.run([str(VENV_BIN / "jobs-worker"), "--burst"], cwd=folder, capture_output=True,
                          env={**env, "JOBS_TASK_MODULES": modules, **extra}, timeout=90)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of worker output, each of which must be a JSON object."""
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    return out


WORDCOUNT = """
    @task("wordcount", params_schema={"type": "object", "properties": {"text": {"type": "string"}},
                                      "required": ["text"]})
    def wordcount(params, ctx: Context):
        return {"words": len(params["text"].split())}
"""


# ---------------------------------------------------------------- defect 2: finding the task module
@pytest.mark.parametrize("modules", ["mytasks", "./mytasks.py"])
def test_task_module_in_the_current_directory(store: JobStore, worker_env: dict[str, str], tmp_path: Path,
                                              modules: str) -> None:
    write_module(tmp_path / "project", WORDCOUNT)
    job, _ = store.enqueue("wordcount", {"text": "a b c"})
    code, _, err = burst(tmp_path / "project", worker_env, modules)
    assert code == 0, err
    assert store.get(job.id).status is JobStatus.SUCCEEDED
    assert store.get_result(job.id).data == b'{"words":3}'


def test_task_module_by_absolute_path_imports_its_neighbours(store: JobStore, worker_env: dict[str, str],
                                                              tmp_path: Path) -> None:
    write_module(tmp_path / "lib", "def shout(s):\n    return s.upper()\n", name="helpers")
    path = write_module(tmp_path / "lib", """
        from helpers import shout

        @task("shout")
        def shout_task(params, ctx):
            return shout(params["s"])
    """, name="shouting")
    job, _ = store.enqueue("shout", {"s": "hi"})
    code, _, err = burst(tmp_path, worker_env, str(path))  # started elsewhere
    assert code == 0, err
    assert store.get_result(job.id).data == b'"HI"'


def test_missing_task_module_says_what_was_searched(worker_env: dict[str, str], tmp_path: Path) -> None:
    code, _, err = burst(tmp_path, worker_env, "mytasks")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    assert "cannot import task module 'mytasks'" in lines[0]
    assert str(tmp_path) in lines[0] and "searched:" in lines[0]
    assert "PYTHONPATH" in lines[0] and "JOBS_TASK_MODULES=/path/to/mytasks.py" in lines[0]


def test_missing_task_file_says_where_it_looked(worker_env: dict[str, str], tmp_path: Path) -> None:
    code, _, err = burst(tmp_path, worker_env, "./nope.py")
    assert code == 2
    assert err.strip().splitlines() == [
        f"jobs-worker: configuration error: JOBS_TASK_MODULES: cannot import task module './nope.py': "
        f"no file {tmp_path}/nope.py "
        f"(a relative path is taken from the worker's current directory, {tmp_path})"
    ]


def test_task_module_that_fails_to_import_names_the_line(worker_env: dict[str, str], tmp_path: Path) -> None:
    write_module(tmp_path, "import numpy_not_installed_here\n")
    code, _, err = burst(tmp_path, worker_env)
    assert code == 2
    [line] = err.strip().splitlines()
    assert "task module mytasks failed to import: ModuleNotFoundError" in line
    assert f"{tmp_path}/mytasks.py:2" in line and "install it in the worker's environment" in line
    write_module(tmp_path, "def broken(:\n")
    code, _, err = burst(tmp_path, worker_env)
    assert code == 2
    [line] = err.strip().splitlines()
    assert "SyntaxError" in line and f"{tmp_path}/mytasks.py:2" in line


def test_make_run_loads_a_task_module_from_the_repo_root(tmp_path: Path) -> None:
    """``JOBS_TASK_MODULES=mytasks make run`` with mytasks.py in the repo root (a unique name here)."""
    import os
    import sys
    import uuid

    from api.stack import ROOT, free_port, http

    name = f"mytasks_{uuid.uuid4().hex[:8]}"
    module = ROOT / f"{name}.py"
    module.write_text(HEADER + textwrap.dedent(WORDCOUNT))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "REDIS_", "PYTHONPATH"))}
    env.update(JOBS_BIND=f"127.0.0.1:{port}", JOBS_TASK_MODULES=name)
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_local.py"), "--run-dir", str(tmp_path)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def submitted() -> Any:
            assert proc.poll() is None, proc.communicate()[0]  # make run gave up (a worker failed)
            try:
                status, _, body = http("POST", base + "/jobs", {"task": "wordcount", "params": {"text": "x y"}})
            except OSError:
                return None  # not listening yet
            return json.loads(body)["id"] if status == 202 else None

        job_id = wait_for(submitted, 90, interval=0.5, what="wordcount accepted by make run's API")
        _, _, body = http("GET", f"{base}/jobs/{job_id}?wait=20")
        assert json.loads(body)["status"] == "succeeded", body
        _, _, body = http("GET", f"{base}/jobs/{job_id}/result")
        assert json.loads(body) == {"words": 2}
    finally:
        module.unlink()
        stop(proc, timeout=60)


# ---------------------------------------------------------------- defect 3: invalid tasks refused at start
@pytest.mark.parametrize("decorator,message", [
    ('@task("bad", params_schema={"type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}})',
     "task 'bad' (mytasks.bad): invalid params_schema at /properties/n/minimum: 'zero' is not of type 'number'"),
    ('@task("bad", params_schema={"type": "object", "properties": {"s": {"type": "string", "pattern": "(["}}})',
     "task 'bad' (mytasks.bad): invalid params_schema at /properties/s/pattern: '([' is not a 'regex'"),
    ('@task("bad", params_schema={"type": "object", "properties": {"n": {"type": "integer", "default": "x"}}})',
     "task 'bad' (mytasks.bad): default /n fails params_schema: 'x' is not of type 'integer'"),
    ('@task("bad", max_attempts=0)', "task 'bad' (mytasks.bad): max_attempts must be an integer >= 1"),
    ('@task("bad", no_retry_on=("ValueError",))',
     "task 'bad' (mytasks.bad): no_retry_on must be exception classes, got 'ValueError'"),
])
def test_invalid_task_stops_the_worker_with_one_line(store: JobStore, worker_env: dict[str, str], tmp_path: Path,
                                                     decorator: str, message: str) -> None:
    write_module(tmp_path, f"{decorator}\ndef bad(params, ctx):\n    return 1\n")
    code, _, err = burst(tmp_path, worker_env)
    assert code == 2
    assert err.strip().splitlines() == [f"jobs-worker: configuration error: JOBS_TASK_MODULES: {message}"]
    assert "bad" not in store.tasks()  # nothing was published


# ---------------------------------------------------------------- defect 4: logging from a task
LOGGING = """
    import logging
    import sys
    import warnings

    log = logging.getLogger(__name__)

    @task("chatty", max_attempts=1)
    def chatty(params, ctx: Context):
        ctx.log.info("via ctx.log", extra={"rows": 3})
        log.warning("via a module logger")
        log.debug("hidden at INFO")
        print("printed", 42)
        print("to stderr", file=sys.stderr)
        sys.stdout.write("no newline at the end")
        warnings.warn("deprecated thing")
        return "ok"
"""


def test_task_logs_are_json_lines_with_the_job(store: JobStore, worker_env: dict[str, str],
                                               tmp_path: Path, namespace: str) -> None:
    write_module(tmp_path, LOGGING)
    job, _ = store.enqueue("chatty", {})
    code, out, err = burst(tmp_path, worker_env)
    assert code == 0, err
    assert err == ""  # nothing unstructured
    lines = json_lines(out)
    mine = [line for line in lines if line.get("job") == job.id and line["logger"] != "jobs.worker"]
    context = {"job": job.id, "task": "chatty", "attempt": 1, "queue": namespace, "tenant": "default"}
    for line in mine:
        assert {k: line.get(k) for k in context} == context, line
    by_msg = {line["msg"]: line for line in mine}
    assert by_msg["via ctx.log"]["level"] == "info" and by_msg["via ctx.log"]["rows"] == 3
    assert by_msg["via ctx.log"]["logger"] == "task.chatty"
    assert by_msg["via a module logger"]["level"] == "warning" and by_msg["via a module logger"]["logger"] == "mytasks"
    assert by_msg["printed 42"]["level"] == "info" and by_msg["printed 42"]["stream"] == "stdout"
    assert by_msg["to stderr"]["level"] == "warning" and by_msg["to stderr"]["stream"] == "stderr"
    assert by_msg["no newline at the end"]["stream"] == "stdout"
    assert any("deprecated thing" in m and by_msg[m]["logger"] == "py.warnings" for m in by_msg)
    assert "hidden at INFO" not in out
    # at DEBUG the debug line comes out too
    again, _ = store.enqueue("chatty", {})
    code, out, _ = burst(tmp_path, worker_env, JOBS_LOG_LEVEL="DEBUG")
    assert any(line["msg"] == "hidden at INFO" and line.get("job") == again.id for line in json_lines(out))


# ---------------------------------------------------------------- defect 5: a result JSON cannot hold
def test_non_json_result_fails_at_once_naming_the_type(store: JobStore, worker_env: dict[str, str],
                                                       tmp_path: Path, namespace: str) -> None:
    write_module(tmp_path, """
        import os
        import redis

        @task("tags", max_attempts=3)
        def tags(params, ctx):
            redis.Redis.from_url(os.environ["REDIS_URL"]).incr(params["counter"])  # a side effect
            return {"name": "x", "tags": {"a", "b"}}
    """)
    counter = f"{namespace}:runs"
    job, _ = store.enqueue("tags", {"counter": counter})
    code, _, err = burst(tmp_path, worker_env)
    assert code == 0, err
    failed = store.get(job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1
    assert store.redis.get(counter) == b"1"  # ran once: side effects not repeated
    assert failed.error is not None and failed.error.type == "ResultNotJSON"
    assert "result['tags']: set" in failed.error.message and failed.error.traceback is None


# ---------------------------------------------------------------- defect 7: the last progress message
def test_finished_job_keeps_the_last_progress_message(store: JobStore, worker_env: dict[str, str],
                                                      tmp_path: Path) -> None:
    write_module(tmp_path, """
        @task("steps")
        def steps(params, ctx):
            ctx.progress(0.3, "downloading")
            ctx.progress(0.9, "rendering")
            ctx.progress(1.0)  # a fraction alone keeps the message
            return "done"
    """)
    job, _ = store.enqueue("steps", {})
    code, _, err = burst(tmp_path, worker_env)
    assert code == 0, err
    done = store.get(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.message == "rendering" and done.progress == 1.0


# ---------------------------------------------------------------- retry policy
POLICY = """
    import os
    import redis
    from jobs_worker import Reject, Retry

    def count(params, ctx):
        redis.Redis.from_url(os.environ["REDIS_URL"]).rpush(params["key"], ctx.attempt)

    @task("no_retry_value", max_attempts=3, no_retry_on=(ValueError,))
    def no_retry_value(params, ctx):
        count(params, ctx)
        raise ValueError("bad input")

    @task("only_io", max_attempts=3, retry_on=(OSError,), backoff=0)
    def only_io(params, ctx):
        count(params, ctx)
        if ctx.attempt == 1:
            raise ConnectionError("flaky network")  # an OSError: retried
        raise KeyError("a bug")  # not an OSError: failed at once

    @task("rejecting", max_attempts=3)
    def rejecting(params, ctx):
        count(params, ctx)
        raise Reject("this image can never be decoded")

    @task("slow_backoff", max_attempts=3, backoff=lambda attempt: 600 * attempt)
    def slow_backoff(params, ctx):
        count(params, ctx)
        raise RuntimeError("try much later")

    @task("listed_backoff", max_attempts=3, backoff=[0, 0])
    def listed_backoff(params, ctx):
        count(params, ctx)
        if not ctx.last_attempt:
            raise Retry("not yet", delay=None)
        return ctx.attempt

    @task("retry_delay", max_attempts=3)
    def retry_delay(params, ctx):
        count(params, ctx)
        raise Retry("come back in 500 s", delay=500)
"""


def test_per_task_retry_policy(store: JobStore, worker_env: dict[str, str], tmp_path: Path,
                               namespace: str) -> None:
    write_module(tmp_path, POLICY)
    jobs = {name: store.enqueue(name, {"key": f"{namespace}:{name}"})[0].id
            for name in ("no_retry_value", "only_io", "rejecting", "slow_backoff", "listed_backoff", "retry_delay")}
    before = time.time()
    proc = worker_in(tmp_path, {**worker_env, "JOBS_RETRY_BACKOFF_SECONDS": "0"}, "mytasks",
                     log=tmp_path / "worker.log")

    def runs(name: str) -> list[int]:
        return [int(x) for x in store.redis.lrange(f"{namespace}:{name}", 0, -1)]

    def settled() -> bool:
        done = [store.get(jobs[n]).is_terminal for n in ("no_retry_value", "only_io", "rejecting",
                                                             "listed_backoff")]
        put_off = [store.redis.zscore(store.keys.delayed, jobs[n]) for n in ("slow_backoff", "retry_delay")]
        return all(done) and None not in put_off

    try:
        wait_for(settled, 60, interval=0.2, what="every job finished or put off")
    finally:
        assert stop(proc) == 0

    def error(name: str) -> tuple[str, str]:
        job = store.get(jobs[name])
        assert job.status is JobStatus.FAILED and job.error is not None, job
        return job.error.type, job.error.message

    assert runs("no_retry_value") == [1] and error("no_retry_value") == ("ValueError", "bad input")
    assert runs("only_io") == [1, 2] and error("only_io")[0] == "KeyError"
    assert runs("rejecting") == [1] and error("rejecting") == ("Reject", "this image can never be decoded")
    assert store.get(jobs["rejecting"]).error.traceback is None  # type: ignore[union-attr]
    assert runs("listed_backoff") == [1, 2, 3]
    assert store.get(jobs["listed_backoff"]).status is JobStatus.SUCCEEDED
    # the backoff function and Retry(delay=) put the job off
    for name, delay in (("slow_backoff", 600), ("retry_delay", 500)):
        assert runs(name) == [1]
        job = store.get(jobs[name])
        assert job.status is JobStatus.QUEUED
        run_at = store.redis.zscore(store.keys.delayed, jobs[name])
        assert run_at is not None and before + delay - 5 < run_at / 1000 < time.time() + delay + 5, name


# ---------------------------------------------------------------- ctx
def test_ctx_describes_the_job(store: JobStore, worker_env: dict[str, str], tmp_path: Path, namespace: str) -> None:
    write_module(tmp_path, """
        @task("whoami", timeout=100, max_attempts=4)
        def whoami(params, ctx: Context):
            return {"job_id": ctx.job_id, "task": ctx.task, "attempt": ctx.attempt,
                    "max_attempts": ctx.max_attempts, "queue": ctx.queue, "tenant": ctx.tenant,
                    "time_left": ctx.time_left(), "last_attempt": ctx.last_attempt,
                    "cancelled": ctx.cancelled}
    """)
    job, _ = store.enqueue("whoami", {}, max_attempts=4, timeout=100, owner="acme")
    code, _, err = burst(tmp_path, worker_env)
    assert code == 0, err
    seen = json.loads(store.get_result(job.id).data)
    assert seen.pop("time_left") == pytest.approx(100, abs=30)
    assert seen == {"job_id": job.id, "task": "whoami", "attempt": 1, "max_attempts": 4,
                    "queue": namespace, "tenant": "acme", "last_attempt": False, "cancelled": False}
