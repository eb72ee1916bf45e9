"""The ``jobs`` CLI end to end (real console script, real API and workers) and JobsClient behaviour."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api.conftest import _CONTRACT
from api.stack import BIN, ROOT, ApiStack, free_port
from jobs_client import JobFailed, JobsAPIError, JobsClient, JobsConnectionError, WaitTimeout
from jobs_client.cli import UsageError, parse_params

KEY = "cli-secret-key"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    with ApiStack(tmp_path_factory.mktemp("cli-stack"), redis_url, api_keys=f"cli:{KEY}") as s:
        yield s


def cli_env(url: str | None = None, key: str | None = None) -> dict[str, str]:
    """This process's environment without its JOBS_* settings, plus JOBS_URL and JOBS_API_KEY when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")}
    env.update({name: value for name, value in (("JOBS_URL", url), ("JOBS_API_KEY", key)) if value is not None})
    return env


def jobs(stack: ApiStack, *args: str, key: str | None = KEY, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "jobs"), *args], env=cli_env(stack.url, key), capture_output=True, text=True,
                          timeout=timeout)


def jobs_on_a_terminal(stack: ApiStack, *args: str, timeout: float = 120) -> tuple[int, str, str]:
    """``jobs *args`` with stderr on a pseudo-terminal, where progress is drawn: (exit code, stdout, what the
    terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(BIN / "jobs"), *args], env=cli_env(stack.url, KEY), stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    chunks = []
    while True:  # until the process (the only other holder of the terminal) has exited
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out = proc.communicate(timeout=timeout)[0]
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


class ValidatingJobsClient(JobsClient):
    """A JobsClient whose every response is checked against /openapi.json."""

    def _send(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        try:
            status, headers, body = super()._send(method, path, **kwargs)
        except JobsAPIError as e:
            raw = json.dumps(e.problem).encode()
            _CONTRACT.check(method, path, e.status, e.headers.get("content-type", ""), raw)
            raise
        _CONTRACT.check(method, path, status, headers.get("content-type", ""), body)
        return status, headers, body


@pytest.fixture
def client(stack: ApiStack) -> JobsClient:
    return ValidatingJobsClient(stack.url, KEY)


def test_tasks(stack: ApiStack) -> None:
    out = jobs(stack, "tasks")
    assert out.returncode == 0
    for name in ("echo", "sleep", "primes", "fail"):
        assert name in out.stdout
    listed = json.loads(jobs(stack, "tasks", "--json").stdout)["tasks"]
    assert {"echo", "sleep"} <= {t["name"] for t in listed}


def test_submit_wait_prints_the_result_and_exits_0(stack: ApiStack) -> None:
    out = jobs(stack, "submit", "echo", "msg=hi", "n=3", "flag=true", "list=[1,2]", "--wait")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"msg": "hi", "n": 3, "flag": True, "list": [1, 2]}
    assert "submitted" in out.stderr


def test_submit_without_wait_prints_the_id(stack: ApiStack, client: JobsClient) -> None:
    out = jobs(stack, "submit", "sleep", "seconds=0.2")
    assert out.returncode == 0
    job_id = out.stdout.strip()
    assert client.wait(job_id, timeout=20)["status"] == "succeeded"
    status = jobs(stack, "status", job_id)
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "succeeded"


def test_failed_job_exits_1_with_the_error(stack: ApiStack) -> None:
    out = jobs(stack, "submit", "fail", "message=kaputt", "--max-attempts", "1", "--wait")
    assert out.returncode == 1
    assert "RuntimeError" in out.stderr and "kaputt" in out.stderr


def test_cancelled_job_exits_3_and_retry_requeues(stack: ApiStack, client: JobsClient) -> None:
    job_id = jobs(stack, "submit", "sleep", "seconds=60").stdout.strip()
    deadline = time.monotonic() + 15
    while client.get(job_id)["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancel = jobs(stack, "cancel", job_id)
    assert cancel.returncode == 0 and "cancel requested" in cancel.stdout
    assert jobs(stack, "wait", job_id, "-q").returncode == 3
    assert jobs(stack, "result", job_id).returncode == 3
    retry = jobs(stack, "retry", job_id)
    assert retry.returncode == 0 and job_id in retry.stdout
    assert jobs(stack, "cancel", job_id).returncode == 0


def test_wait_timeout_exits_6(stack: ApiStack) -> None:
    job_id = jobs(stack, "submit", "sleep", "seconds=30").stdout.strip()
    start = time.monotonic()
    out = jobs(stack, "wait", job_id, "--timeout", "1", "-q")
    assert out.returncode == 6
    assert time.monotonic() - start < 10
    jobs(stack, "cancel", job_id)


def test_result_to_a_file(stack: ApiStack, tmp_path: Path) -> None:
    job_id = jobs(stack, "submit", "primes", "limit=1000").stdout.strip()
    assert jobs(stack, "wait", job_id, "-q").returncode == 0
    target = tmp_path / "out.json"
    out = jobs(stack, "result", job_id, "-o", str(target))
    assert out.returncode == 0
    assert json.loads(target.read_text()) == {"limit": 1000, "count": 168}


def test_submit_wait_with_output_file(stack: ApiStack, tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    out = jobs(stack, "submit", "echo", "a=1", "--wait", "-q", "-o", str(target))
    assert out.returncode == 0
    assert json.loads(target.read_text()) == {"a": 1}


def test_list(stack: ApiStack) -> None:
    job_id = jobs(stack, "submit", "fail", "message=x", "--max-attempts", "1", "--wait", "-q").returncode
    assert job_id == 1
    out = jobs(stack, "list", "--status", "failed", "--limit", "5")
    assert out.returncode == 0 and "failed" in out.stdout and "fail" in out.stdout
    page = json.loads(jobs(stack, "list", "--json", "--limit", "2").stdout)
    assert len(page["jobs"]) == 2 and page["next_cursor"]
    everything = json.loads(jobs(stack, "list", "--json", "--all", "--limit", "2").stdout)
    ids = [j["id"] for j in everything["jobs"]]
    assert len(ids) == len(set(ids)) > 2


def test_live_progress_bar_on_a_terminal(stack: ApiStack) -> None:
    job_id = jobs(stack, "submit", "sleep", "seconds=1.5").stdout.strip()
    code, _, screen = jobs_on_a_terminal(stack, "wait", job_id, timeout=30)
    assert code == 0
    assert "\r[" in screen and "#" in screen and "100.0%" in screen and "succeeded" in screen
    frames = screen.count("\r[")
    assert frames >= 3, screen  # redrawn while it ran, not just once at the end


def test_errors_exit_codes(stack: ApiStack) -> None:
    missing = jobs(stack, "status", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 4 and "404" in missing.stderr
    assert jobs(stack, "tasks", key="wrong").returncode == 4
    unknown = jobs(stack, "submit", "primes", "limit=abc")
    assert unknown.returncode == 4 and "/params/limit" in unknown.stderr
    assert jobs(stack, "submit", "echo", "novalue").returncode == 2
    assert jobs(stack, "frobnicate").returncode == 2
    down = subprocess.run([str(BIN / "jobs"), "--url", f"http://127.0.0.1:{free_port()}", "tasks"], env=cli_env(),
                          capture_output=True, text=True, timeout=30)
    assert down.returncode == 5 and "cannot reach" in down.stderr


def test_result_ends_with_a_newline(stack: ApiStack) -> None:
    submitted = jobs(stack, "submit", "echo", "a=1", "--wait", "-q")
    assert submitted.returncode == 0 and submitted.stdout == '{"a":1}\n', repr(submitted.stdout)
    job_id = jobs(stack, "submit", "echo", "b=2").stdout.strip()
    assert jobs(stack, "wait", job_id, "-q").returncode == 0
    out = jobs(stack, "result", job_id)
    assert out.returncode == 0 and out.stdout == '{"b":2}\n', repr(out.stdout)


def test_401_says_which_key_to_set(stack: ApiStack) -> None:
    missing = jobs(stack, "tasks", key=None)
    assert missing.returncode == 4
    assert "401" in missing.stderr and "JOBS_API_KEY" in missing.stderr and "--api-key" in missing.stderr
    wrong = jobs(stack, "tasks", key="not-the-key")
    assert wrong.returncode == 4 and "refused" in wrong.stderr and "JOBS_API_KEY" in wrong.stderr


def test_client_errors_carry_the_problem(client: JobsClient, stack: ApiStack) -> None:
    checked = _CONTRACT.checked
    client.tasks()
    assert _CONTRACT.checked == checked + 1  # the client's responses are held to /openapi.json too
    with pytest.raises(JobsAPIError) as e:
        client.submit("primes", {"limit": "x"})
    assert e.value.status == 422 and e.value.errors[0]["path"] == "/params/limit"
    job = client.submit("sleep", {"seconds": 30})
    with pytest.raises(JobsAPIError) as e:
        client.result(job["id"])
    assert e.value.status == 409 and e.value.job_status in ("queued", "running")
    client.cancel(job["id"])
    with pytest.raises(JobsConnectionError):
        JobsClient(f"http://127.0.0.1:{free_port()}").tasks()
    assert not JobsClient(f"http://127.0.0.1:{free_port()}").ready()
    assert client.ready()


def test_client_idempotency_and_iteration(client: JobsClient) -> None:
    a = client.submit("echo", {"x": 1}, idempotency_key="cli-idem-1")
    b = client.submit("echo", {"x": 1}, idempotency_key="cli-idem-1")
    assert a["id"] == b["id"]
    assert client.wait(a["id"], timeout=20)["status"] == "succeeded"
    assert client.result_json(a["id"]) == {"x": 1}
    ids = [j["id"] for j in client.iter_jobs(page_size=3)]
    assert a["id"] in ids and len(ids) == len(set(ids))


def test_parse_params() -> None:
    assert parse_params(["a=1", "b=x", "c=true", "d=null", 'e={"k":[1]}', "f=", "g=a=b"], None) == {
        "a": 1, "b": "x", "c": True, "d": None, "e": {"k": [1]}, "f": "", "g": "a=b",
    }
    assert parse_params(["a=2"], '{"a": 1, "b": 2}') == {"a": 2, "b": 2}
    for bad in (["novalue"], ["=1"]):
        with pytest.raises(UsageError):
            parse_params(bad, None)
    with pytest.raises(UsageError):
        parse_params([], "[1]")


def test_wait_rides_out_an_api_restart(redis_url: str, tmp_path: Path) -> None:
    import threading

    with ApiStack(tmp_path, redis_url, workers=1) as s:
        client = JobsClient(s.url, outage_tolerance=30)
        job = client.submit("sleep", {"seconds": 3})
        result: dict[str, object] = {}
        waiter = threading.Thread(target=lambda: result.update(job=client.wait(job["id"], timeout=60)))
        waiter.start()
        time.sleep(0.5)
        assert s.stop_api() == 0  # the waiter's long-poll ends, then it cannot connect for a while
        time.sleep(1.0)
        s.start_api()
        waiter.join(60)
        assert result["job"]["status"] == "succeeded"  # type: ignore[index]
        with pytest.raises(JobsConnectionError):
            JobsClient(f"http://127.0.0.1:{free_port()}", outage_tolerance=0.5).wait(job["id"])


def test_queue_full_is_retried_after_retry_after(redis_url: str, tmp_path: Path) -> None:
    import threading

    from api.conftest import TASKS

    s = ApiStack(tmp_path, redis_url, workers=0, extra_env={"JOBS_MAX_PENDING_PER_TENANT": "1"})
    s.store().publish_tasks(TASKS)
    with s:
        first = JobsClient(s.url).submit("echo")
        with pytest.raises(JobsAPIError) as e:
            JobsClient(s.url, retries=0).submit("echo")
        assert e.value.status == 429 and e.value.headers["retry-after"]
        threading.Timer(0.3, lambda: JobsClient(s.url).cancel(first["id"])).start()  # frees the slot
        second = JobsClient(s.url, retries=4, max_retry_delay=0.5).submit("echo", idempotency_key="once")
        assert second["status"] == "queued"
        assert [j["id"] for j in JobsClient(s.url).list(status="queued")["jobs"]] == [second["id"]]


def test_global_options_work_before_and_after_the_command(stack: ApiStack) -> None:
    env = cli_env(f"http://127.0.0.1:{free_port()}")  # wrong on purpose: --url must win
    for args in (["--url", stack.url, "--api-key", KEY, "--json", "tasks"],
                 ["tasks", "--url", stack.url, "--api-key", KEY, "--json"]):
        out = subprocess.run([str(BIN / "jobs"), *args], env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, (args, out.stderr)
        assert "tasks" in json.loads(out.stdout)


def _python_client_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Python client")
    return text[start : text.index("\n### ", start + 1)]


def test_readme_python_client_example_runs_as_written(stack: ApiStack) -> None:
    import re

    code = re.findall(r"```python\n(.*?)```", _python_client_section(), flags=re.S)[0]
    out = subprocess.run([str(BIN / "python"), "-c", code], env=cli_env(stack.url, KEY), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["{'limit': 1000000, 'count': 78498}", "3 RuntimeError boom"], out.stdout


def test_readme_documents_every_client_method_and_error() -> None:
    import inspect

    import jobs_client

    section = _python_client_section()
    methods = [n for n, _ in inspect.getmembers(JobsClient, inspect.isfunction) if not n.startswith("_")]
    assert len(methods) >= 20
    missing = [n for n in methods if f"`{n}(" not in section and f", {n}(" not in section]
    assert not missing, f"README 'Python client' lacks {missing}"
    errors = [n for n in jobs_client.__all__ if n.endswith(("Error", "Failed", "Timeout"))]
    assert [n for n in errors if f"`{n}`" not in section] == []
    for name in methods:  # and each has a docstring (what `help(JobsClient)` shows)
        assert (getattr(JobsClient, name).__doc__ or "").strip(), name


def test_wait_returns_failures_and_timeouts_or_raises_them(client: JobsClient) -> None:
    failed = client.submit("fail", {"message": "kaputt"}, max_attempts=1)
    job = client.wait(failed["id"], timeout=30)
    assert job["status"] == "failed" and job["error"]["type"] == "RuntimeError"  # returned, not raised
    with pytest.raises(JobFailed) as e:
        client.wait(failed["id"], timeout=30, raise_on_failure=True)
    assert e.value.job["id"] == failed["id"] and e.value.error_message == "kaputt" and e.value.status == "failed"

    slow = client.submit("sleep", {"seconds": 30})
    job = client.wait(slow["id"], timeout=0.5)
    assert job["status"] in ("queued", "running")  # the timeout returns the job as it is
    with pytest.raises(WaitTimeout) as t:
        client.wait(slow["id"], timeout=0.5, raise_on_failure=True)
    assert t.value.job["id"] == slow["id"]
    client.cancel(slow["id"])
    with pytest.raises(JobFailed) as c:
        client.wait(slow["id"], timeout=30, raise_on_failure=True)
    assert c.value.status == "cancelled" and c.value.error_type is None
    done = client.submit("echo", {"ok": True})
    assert client.wait(done["id"], timeout=30, raise_on_failure=True)["status"] == "succeeded"


def test_readme_cli_wait_example_shows_progress(stack: ApiStack) -> None:
    """Issue 9 defect 10: the README's `jobs submit primes ... --wait` takes long enough that the live
    progress bar is seen moving, then prints the result."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Command-line client") : text.index("### Python client")]
    line = next(ln for ln in section.splitlines() if "submit primes" in ln and "--wait" in ln)
    args = shlex.split(line.split("#")[0])[1:]  # drop `.venv/bin/jobs`
    code, out, screen = jobs_on_a_terminal(stack, *args)
    assert code == 0
    assert json.loads(out) == {"limit": 500000000, "count": 26355867}
    shown = set(re.findall(r"\] +(\d+\.\d)% running", screen))
    # the bar moved while it ran: a value between 0 and 100 was shown, then the end. The job takes ~5.5 s
    # on an idle machine; `submit --wait` first lets the server hold the submission for 2 s (Prefer: wait),
    # then the bar refreshes twice a second (a ~1 s job, the example before, ended inside the hold: no bar)
    assert shown - {"0.0", "100.0"}, screen[-2000:]
    assert "100.0% succeeded" in screen, screen[-2000:]


def test_submit_with_wait_returns_the_finished_job_in_one_request(stack: ApiStack, client: JobsClient) -> None:
    """``JobsClient.submit(wait=)`` sends ``Prefer: wait``: a short job comes back finished, its JSON result
    inline; the CLI's ``submit --wait`` prints the same result from it (responses checked against the contract)."""
    job = client.submit("echo", {"n": 5}, wait=10)
    assert job["status"] == "succeeded" and job["result"] == {"n": 5}
    assert client.result_json(job["id"]) == {"n": 5}
    queued = client.submit("sleep", {"seconds": 30}, wait=1)  # the wait passes first: as without it
    assert queued["status"] in ("queued", "running") and "result" not in queued
    client.cancel(queued["id"])
    out = jobs(stack, "submit", "echo", "a=7", "--wait", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["status"] == "succeeded", out.stderr
    assert "result" not in json.loads(out.stdout)  # the job as GET /jobs/<id> shows it
