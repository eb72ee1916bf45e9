"""End to end over HTTP: the real gunicorn API (2 processes) and real ``jobs-worker`` processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.procs import wait_for

from api.conftest import TASKS
from api.contract import Contract
from api.stack import BIN, ApiStack, http

KEY = "e2e-secret-key"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    with ApiStack(tmp_path_factory.mktemp("api-stack"), redis_url, api_keys=f"acme:{KEY}") as s:
        yield s


class Http:
    """HTTP calls to the stack, each response checked against /openapi.json."""

    def __init__(self, stack: ApiStack, contract: Contract) -> None:
        self.stack = stack
        self.contract = contract

    def __call__(self, method: str, path: str, body: Any = None, key: str | None = KEY,
                 timeout: float = 30) -> tuple[int, dict[str, str], Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        status, hdrs, raw = http(method, self.stack.url + path, body, headers, timeout)
        self.contract.check(method, path.split("?")[0], status, hdrs.get("content-type", ""), raw)
        ctype = hdrs.get("content-type", "")
        return status, hdrs, json.loads(raw) if "json" in ctype and raw else raw


@pytest.fixture
def api(stack: ApiStack, contract: Contract) -> Http:
    return Http(stack, contract)


def test_job_runs_to_success_and_long_poll_returns_it(api: Http) -> None:
    status, headers, job = api("POST", "/jobs", {"task": "sleep", "params": {"seconds": 0.5}})
    assert status == 202 and headers["location"] == f"/jobs/{job['id']}"
    start = time.monotonic()
    status, _, done = api("GET", f"/jobs/{job['id']}?wait=20")
    assert done["status"] == "succeeded", done
    assert time.monotonic() - start < 10
    assert done["progress"] == 1.0 and done["attempts"] == 1 and done["worker"]
    assert done["started_at"] and done["finished_at"]
    status, headers, result = api("GET", f"/jobs/{job['id']}/result")
    assert status == 200 and headers["content-type"] == "application/json" and result == {"slept": 0.5}


def test_cancel_of_a_running_job(api: Http) -> None:
    _, _, job = api("POST", "/jobs", {"task": "sleep", "params": {"seconds": 60}})
    deadline = time.monotonic() + 15
    while api("GET", f"/jobs/{job['id']}")[2]["status"] != "running":
        assert time.monotonic() < deadline, "job never started"
        time.sleep(0.1)
    status, _, body = api("DELETE", f"/jobs/{job['id']}")
    assert status == 202 and body["status"] == "running"
    _, _, done = api("GET", f"/jobs/{job['id']}?wait=20")
    assert done["status"] == "cancelled"
    assert api("DELETE", f"/jobs/{job['id']}")[0] == 409


def test_failed_job_keeps_its_error_and_can_be_retried(api: Http) -> None:
    _, _, job = api("POST", "/jobs", {"task": "fail", "params": {"message": "nope"}, "max_attempts": 1})
    _, _, done = api("GET", f"/jobs/{job['id']}?wait=20")
    assert done["status"] == "failed"
    assert done["error"]["type"] == "RuntimeError" and "nope" in done["error"]["message"]
    assert api("GET", f"/jobs/{job['id']}/result")[2]["job_status"] == "failed"
    assert api("GET", "/jobs?status=failed")[2]["jobs"][0]["id"] == job["id"]
    status, _, again = api("POST", f"/jobs/{job['id']}/retry")
    assert status == 202 and again["status"] in ("queued", "running", "failed")  # a worker may be quick
    assert api("GET", f"/jobs/{job['id']}?wait=20")[2]["status"] == "failed"


def test_unknown_task_and_bad_params_are_422_over_http(api: Http) -> None:
    status, _, problem = api("POST", "/jobs", {"task": "primes", "params": {"limit": "many"}})
    assert status == 422 and problem["errors"][0]["path"] == "/params/limit"
    assert api("POST", "/jobs", {"task": "nope"})[0] == 422
    assert api("GET", "/tasks", key=None)[0] == 401


def test_metrics_add_up_across_gunicorn_workers(api: Http, stack: ApiStack) -> None:
    def scrape() -> tuple[float, bytes]:
        status, _, raw = http("GET", stack.url + "/metrics")
        assert status == 200
        m = re.search(rb'jobs_api_submissions_total\{outcome="accepted",task="echo"\} ([0-9.]+)', raw)
        return (float(m.group(1)) if m else 0.0), raw

    def metrics_pids() -> set[int]:
        return {json.loads(line)["pid"] for line in stack.access_log.read_text().splitlines()
                if '"path":"/metrics"' in line}

    before, _ = scrape()
    for i in range(16):
        assert api("POST", "/jobs", {"task": "echo", "params": {"i": i}})[0] == 202
    # every scrape, whichever process answers it, sees the sum over all processes
    values = []
    for _ in range(200):
        values.append(scrape()[0])
        if len(values) >= 8 and len(metrics_pids()) >= 2:
            break
    assert len(metrics_pids()) >= 2, "scrapes never reached a second gunicorn worker"
    assert set(values) == {before + 16}
    raw = scrape()[1]
    assert b'jobs_queue_jobs{queue="' in raw and b'state="queued"}' in raw and b"jobs_api_redis_up 1.0" in raw


def test_access_log_is_json_lines_without_secrets(api: Http, stack: ApiStack) -> None:
    api("GET", "/tasks")
    lines = stack.access_log.read_text().splitlines()
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert entry["type"] == "access"
        assert {"method", "path", "status", "duration_ms", "request_id"} <= set(entry)
    assert KEY not in stack.access_log.read_text() + stack.error_log.read_text()
    for line in stack.error_log.read_text().splitlines():
        json.loads(line)  # app and gunicorn error logs are JSON lines too


def test_long_poll_holds_a_thread_not_the_server(api: Http, stack: ApiStack) -> None:
    _, _, job = api("POST", "/jobs", {"task": "sleep", "params": {"seconds": 30}})
    polls = [threading.Thread(target=api, args=("GET", f"/jobs/{job['id']}?wait=3")) for _ in range(4)]
    for t in polls:
        t.start()
    time.sleep(0.3)
    start = time.monotonic()
    assert http("GET", stack.url + "/healthz")[0] == 200
    assert time.monotonic() - start < 0.5
    for t in polls:
        t.join()
    api("DELETE", f"/jobs/{job['id']}")


def _long_poll_then_sigterm(redis_url: str, tmp_path: Path, wait: float, after: float) -> tuple[Any, float]:
    """Long-poll a queued job (no worker runs) with ``?wait=``, SIGTERM the API ``after`` seconds into it and
    check it exits 0; (the poll's answer, seconds from the SIGTERM to that answer)."""
    s = ApiStack(tmp_path, redis_url, workers=0)
    s.store().publish_tasks(TASKS)
    with s:
        job_id = json.loads(http("POST", s.url + "/jobs", {"task": "sleep", "params": {"seconds": 1}})[2])["id"]
        answer: dict[str, Any] = {}

        def poll() -> None:
            answer["r"] = http("GET", s.url + f"/jobs/{job_id}?wait={wait:g}", timeout=wait + 10)
            answer["t"] = time.monotonic()

        t = threading.Thread(target=poll)
        t.start()
        time.sleep(after)
        assert s.api is not None
        stopped_at = time.monotonic()
        s.api.send_signal(signal.SIGTERM)
        t.join(30)
        assert s.api.wait(20) == 0
    return answer["r"], answer["t"] - stopped_at


def test_sigterm_finishes_requests_in_flight_and_cleans_up(redis_url: str, tmp_path: Path) -> None:
    answer, _ = _long_poll_then_sigterm(redis_url, tmp_path, wait=1.5, after=0.4)
    assert answer[0] == 200  # the long-poll in flight was answered, not cut
    assert not list(tmp_path.glob("jobs-api-metrics-*")), "metrics directory left behind"


def test_config_error_is_one_clear_line_and_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run([str(BIN / "jobs-api")], env={"PATH": "/usr/bin:/bin", "JOBS_LEASE_SECONDS": "soon"},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "JOBS_LEASE_SECONDS must be a number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_chunked_body_over_the_limit_is_413(redis_url: str, tmp_path: Path) -> None:
    import http.client

    with ApiStack(tmp_path, redis_url, workers=0, extra_env={"JOBS_MAX_BODY_BYTES": "1000"}) as s:

        def post_chunked(size: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
            body = json.dumps({"task": "nope", "params": {"x": "a" * size}}).encode()
            chunks = (body[i : i + 300] for i in range(0, len(body), 300))
            conn.request("POST", "/jobs", body=chunks, headers={"Content-Type": "application/json"},
                         encode_chunked=True)
            status = conn.getresponse().status
            conn.close()
            return status

        assert post_chunked(5000) == 413
        assert post_chunked(900) == 422  # under the limit: read whole, then refused for the unknown task


def test_given_metrics_dir_is_cleared_of_stale_samples_and_kept(redis_url: str, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999.db"
    stale.write_bytes(b"\0" * 16)  # a previous pod's samples would be added to ours
    with ApiStack(tmp_path / "stack", redis_url, workers=0,
                  extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as s:
        assert not stale.exists()
        http("GET", s.url + "/healthz")
        status, _, raw = http("GET", s.url + "/metrics")
        assert status == 200 and b"jobs_api_request_duration_seconds" in raw
        assert any(metrics_dir.glob("*.db"))  # samples are written where we were told
    assert metrics_dir.is_dir()  # not ours to remove


def test_sigterm_ends_long_polls_early_with_the_current_job(redis_url: str, tmp_path: Path) -> None:
    answer, answered_after = _long_poll_then_sigterm(redis_url, tmp_path, wait=60, after=0.5)
    assert answer[0] == 200 and json.loads(answer[2])["status"] == "queued"
    assert answered_after < 5  # one wait slice, not the 60 s asked for


def test_sigterm_answers_a_held_submission_with_the_job_as_it_is(redis_url: str, tmp_path: Path) -> None:
    """A ``Prefer: wait`` submission held when the API is stopped (no worker runs its job) is answered within
    a wait slice — 202, the stored job as it is, ``Preference-Applied: wait`` — and the API exits 0."""
    s = ApiStack(tmp_path, redis_url, workers=0)
    s.store().publish_tasks(TASKS)
    with s:
        answer: dict[str, Any] = {}

        def submit() -> None:
            answer["r"] = http("POST", s.url + "/jobs", {"task": "sleep", "params": {"seconds": 1}},
                               {"Prefer": "wait=60"}, timeout=70)

        t = threading.Thread(target=submit)
        t.start()
        wait_for(lambda: bool(s.store().list_jobs()[0]), timeout=30, what="the held submission stored")
        assert s.api is not None
        s.api.send_signal(signal.SIGTERM)
        t.join(30)
        assert s.api.wait(20) == 0
    status, headers, raw = answer["r"]
    assert status == 202 and headers.get("preference-applied") == "wait"
    assert json.loads(raw)["status"] == "queued"


@pytest.mark.parametrize("name,raw,status", [
    ("CR in a header value", b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Evil: a\rInjected: 1\r\n\r\n", 400),
    ("NUL in a header", b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-Evil: a\x00b\r\n\r\n", 400),
    ("request line over the limit", b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("garbage request line", b"HELLO\r\n\r\n", 400),
])
def test_requests_gunicorn_rejects_get_problem_json(stack: ApiStack, name: str, raw: bytes, status: int) -> None:
    """Errors raised by gunicorn's HTTP parser, before the app, are problem+json too (and echo nothing)."""
    import socket

    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), (name, lines[0])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == status and problem["title"] and problem["detail"]
    assert b"Injected" not in body and b"aaaa" not in body
