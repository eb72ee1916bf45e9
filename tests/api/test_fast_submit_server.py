"""The fast path of ``POST /jobs`` under real gunicorn: the access log line, the application log lines, the
answers and the /metrics series (aggregated over the worker processes) are those of the Flask path.

Two API stacks (``JOBS_FAST_SUBMIT`` on and off), each on its own namespace, get the same requests (each
with its own request id) over real HTTP; their logs and scrapes are compared field by field, with times,
durations, pids, job ids and the namespace left out.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from api.conftest import TASKS
from api.stack import ApiStack

KEY = "fast-path-key-0123456789"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_VARYING = {"ts", "duration_ms", "pid"}
#: (name, body, headers): a valid job, an invalid one, a bad key, malformed JSON, a replayed idempotent
#: submission, a 415 (handed to Flask by the fast path), and a held submission (``Prefer: wait``; no worker
#: runs, so it is answered 202 when the wait passes).
REQUESTS: list[tuple[str, bytes, dict[str, str]]] = [
    ("valid", b'{"task": "echo", "params": {"n": 1}}', {}),
    ("unknown task", b'{"task": "nope"}', {}),
    ("params schema", b'{"task": "primes", "params": {}}', {}),
    ("bad key", b'{"task": "echo"}', {"Authorization": "Bearer wrong-key-000"}),
    ("malformed", b'{"task"', {}),
    ("idempotent", b'{"task": "echo"}', {"Idempotency-Key": "same"}),
    ("idempotent again", b'{"task": "echo"}', {"Idempotency-Key": "same"}),
    ("text/plain", b'{"task": "echo"}', {"Content-Type": "text/plain"}),
    ("held", b'{"task": "echo"}', {"Prefer": "wait=1"}),
]


@pytest.fixture(scope="module")
def stacks(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ApiStack]]:
    made: dict[str, ApiStack] = {}
    try:
        for name, flag in (("fast", "1"), ("flask", "0")):
            stack = ApiStack(tmp_path_factory.mktemp(f"api-{name}"), redis_url, workers=0, web_concurrency=2,
                             api_keys=f"acme:{KEY}", extra_env={"JOBS_FAST_SUBMIT": flag, "JOBS_LOG_LEVEL": "INFO"})
            made[name] = stack.start()
            stack.store().publish_tasks(TASKS)
        yield made
    finally:
        for stack in made.values():
            stack.stop()


def _send(stack: ApiStack, body: bytes, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    try:
        conn.request("POST", "/jobs", body=body, headers={"Authorization": f"Bearer {KEY}",
                                                          "Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, [(k, v) for k, v in resp.getheaders() if k != "Date"], resp.read()
    finally:
        conn.close()


def _norm(stack: ApiStack, text: str) -> str:
    return _TIME.sub("<time>", _UUID.sub("<id>", text.replace(stack.namespace, "<ns>")))


def _lines(stack: ApiStack, path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if (entry.get("type") == "access" and entry.get("path") == "/jobs") or \
                    entry.get("logger", "").startswith("jobs_api."):
                out.append({k: _norm(stack, str(v)) for k, v in entry.items() if k not in _VARYING})
    return out


def _scrape(stack: ApiStack) -> list[str]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    wanted = ("jobs_api_submissions_total", 'jobs_api_request_duration_seconds_count{method="POST",route="/jobs"')
    return sorted(line for line in text.splitlines() if line.startswith(wanted))


def test_answers_logs_and_metrics_are_those_of_the_flask_path(stacks: dict[str, ApiStack]) -> None:
    answers: dict[str, list[Any]] = {}
    for name, stack in stacks.items():
        for i, (what, body, headers) in enumerate(REQUESTS):
            status, hdrs, raw = _send(stack, body, {"X-Request-ID": f"req-{i}", **headers})
            answers.setdefault(name, []).append((what, status, [(k, _norm(stack, v)) for k, v in hdrs],
                                                 _norm(stack, raw.decode())))
    assert answers["fast"] == answers["flask"]
    assert [a[1] for a in answers["fast"]] == [202, 422, 422, 401, 400, 202, 202, 415, 202]
    # access lines are written after the answer (slowly on a loaded machine); application lines before it
    deadline = time.monotonic() + 15
    while True:
        logs = {name: _lines(stack, stack.access_log) + _lines(stack, stack.error_log)
                for name, stack in stacks.items()}
        if all(sum(e.get("type") == "access" for e in lines) >= len(REQUESTS) for lines in logs.values()) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    # each thread writes its access line after its answer: two requests answered by two threads (or
    # processes) one after the other may have their lines written the other way round
    logs = {name: sorted(lines, key=lambda e: (e.get("type") != "access", e["request_id"] if e.get("type") == "access"
                                               else "")) for name, lines in logs.items()}
    access = [e for e in logs["fast"] if e.get("type") == "access"]
    assert [e["request_id"] for e in access] == [f"req-{i}" for i in range(len(REQUESTS))]
    submitted = [e for e in logs["fast"] if e.get("msg") in ("job submitted", "job submission replayed")]
    assert [e["request_id"] for e in submitted] == ["req-0", "req-5", "req-6", "req-8"]
    assert logs["fast"] == logs["flask"]
    scrapes = {name: _scrape(stack) for name, stack in stacks.items()}
    assert any('status="202"' in line for line in scrapes["fast"])
    assert scrapes["fast"] == scrapes["flask"]
