"""The README's HTTP API examples run as written against a real stack (auth off, as `make run` has it)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.lateness import TimerLateness

from api.stack import ROOT, ApiStack

README = ROOT / "README.md"


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end, text.index(start))]


def _shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    s = ApiStack(tmp_path_factory.mktemp("readme-stack"), redis_url).start()
    try:
        yield s
    finally:
        s.stop()


def test_http_api_examples_run_as_written(stack: ApiStack, tmp_path: Path) -> None:
    text = README.read_text()
    blocks = _shell_blocks(_section(text, "## HTTP API", "### Command-line client"))
    assert len(blocks) >= 10
    # the examples name make run's default queue, `jobs`; this stack's default queue is its namespace
    script = "set -euo pipefail\n" + "\n".join(blocks).replace("http://127.0.0.1:8000", stack.url).replace(
        "/queues/jobs", f"/queues/{stack.namespace}")
    # curl must not hide HTTP failures other than the documented 422 example: every reply is JSON or metrics
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert '"status":"queued"' in out
    assert '"title":"Validation failed"' in out and '"/params/limit"' in out
    assert '"status":"ready"' in out and "jobs_queue_jobs" in out
    assert '"next_cursor"' in out and '"tasks"' in out
    assert '"/jobs/1/params/limit"' in out and '"invalid_items":[1]' in out  # the bad batch
    assert '"priority":9' in out and '"queues":[' in out
    for shown in ('"paused":true', '"paused":false', '"cap":2', '"cap":null'):
        assert shown in out, shown
    bodies = _json_bodies(out)
    assert all(body.get("status") != 500 for body in bodies)
    _examples_show_what_they_claim(out, bodies)


def _json_bodies(out: str) -> list[dict[str, object]]:
    """Every JSON object the examples printed, in order."""
    decoder = json.JSONDecoder()
    bodies = []
    for line in out.splitlines():
        pos = 0
        while line.startswith("{", pos):  # a result (raw bytes, no newline) may share a line
            body, pos = decoder.raw_decode(line, pos)
            bodies.append(body)
    return bodies


def _examples_show_what_they_claim(out: str, bodies: list[dict[str, object]]) -> None:
    """Issue 9 defect 10: each example demonstrates what its sentence says, not just that it runs."""
    # no example runs into a 409 by accident (the retry example once retried a job still running)
    conflicts = [b for b in bodies if b.get("status") == 409]
    assert not conflicts, conflicts
    # ?wait=30 is seen to wait: the primes job was queued/running when read at once, succeeded after the wait
    job_id = re.search(r"^([0-9a-f-]{36})$", out, flags=re.M).group(1)  # type: ignore[union-attr]
    seen = [b["status"] for b in bodies if b.get("id") == job_id]
    assert seen[0] in ("queued", "running") and "succeeded" in seen[1:], seen
    assert {"limit": 100000000, "count": 5761455} in bodies  # the result example got the real result
    # retry: the cancelled job is shown cancelled, then queued again by the retry
    cancelled = [b for b in bodies if b.get("status") == "cancelled" and b.get("task") == "sleep"]
    assert cancelled, "the retry example never showed the cancelled job"
    long_id = cancelled[0]["id"]
    # DELETE answers "cancelled" at once when no worker had taken the job yet (they may all be busy), else
    # "running" with a cancel requested; either way the job is read cancelled and the retry queues it again
    statuses = [b["status"] for b in bodies if b.get("id") == long_id]
    retried = [(a, b) for a, b in itertools.pairwise(statuses) if a == "cancelled"]
    assert any(b in ("queued", "running") for _, b in retried), statuses  # a free worker may take it first
    # the built-in `fail` task retries: it failed after 3 attempts, and the manual retry queued it again
    failed = [b for b in bodies if b.get("task") == "fail" and b.get("status") == "failed"]
    assert failed and failed[0]["attempts"] == 3 and failed[0]["max_attempts"] == 3, failed
    assert failed[0]["error"]["message"] == "boom"  # type: ignore[index]
    again = [b for b in bodies[bodies.index(failed[0]) + 1 :] if b.get("id") == failed[0]["id"]]
    assert again and again[0]["status"] in ("queued", "running"), again


def test_quick_start_curl_runs_as_written(stack: ApiStack) -> None:
    text = README.read_text()
    block = _shell_blocks(_section(text, "## Quick start", "## HTTP API"))[1]
    curl = "\n".join(line for line in block.replace("\\\n", "").splitlines() if line.startswith("curl"))
    proc = subprocess.run(["bash", "-c", curl.replace("http://127.0.0.1:8000", stack.url)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["status"] == "queued"


def test_cli_wait_example_of_a_short_job_runs_as_written(stack: ApiStack) -> None:
    """README "Command-line client": `jobs submit echo n=1 --wait` run verbatim (the line as printed, from the
    repository root, JOBS_URL the stack's): it prints the result, and the job came back finished from the
    submission itself, held by the server (Prefer: wait answered 200; no polling), before the result was read.
    """
    text = README.read_text()
    section = _section(text, "### Command-line client", "### Python client")
    line = next(ln for ln in _shell_blocks(section)[0].splitlines() if "submit echo n=1 --wait" in ln)
    command, claim = (part.strip() for part in line.split("#", 1))
    assert "Prefer: wait" in claim and "no polling" in claim, claim  # what is checked below
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")} | {"JOBS_URL": stack.url}
    seen = len(stack.access_log.read_bytes().splitlines())
    with TimerLateness() as lateness:
        proc = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"n": 1}
    job_id = re.search(r"submitted ([0-9a-f-]{36})", proc.stderr).group(1)  # type: ignore[union-attr]

    def cli_requests() -> list[tuple[str, str, int]]:
        lines = [json.loads(ln) for ln in stack.access_log.read_bytes().splitlines()[seen:]]
        # the CLI's own requests only: the test before this one POSTs /jobs with curl, and gunicorn may write
        # that access line after `seen` was counted (a CI run once read it as the CLI's first answer)
        return [(r["method"], r["path"], r["status"]) for r in lines
                if r.get("type") == "access" and (r.get("user_agent") or "").startswith("jobs-client/")
                and (r["path"] == "/jobs" or job_id in (r["path"] or ""))]

    # gunicorn writes an access line just after the answer is sent: the CLI may have exited a moment before
    deadline = time.monotonic() + 10
    while len(cli_requests()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    requests = cli_requests()
    if requests[:1] == [("POST", "/jobs", 202)]:
        # the 2 s hold passed before a worker ran a no-op job: only a machine too busy to run anything on
        # time does that (its timers were seconds late), and the CLI then polled as documented
        assert lateness.worst() >= 0.5, (requests, lateness.worst())
        return
    assert requests == [("POST", "/jobs", 200), ("GET", f"/jobs/{job_id}/result", 200)], requests


def test_settings_table_lists_every_variable_the_code_reads() -> None:
    text = README.read_text()
    table = _section(text, "## Settings", "\n## ")
    sources = [
        ROOT / "libs/jobs_core/src/jobs_core/config.py",
        ROOT / "services/api/src/jobs_api/gunicorn_conf.py",
        ROOT / "services/api/src/jobs_api/console/session.py",
        ROOT / "services/api/src/jobs_api/slots.py",
        ROOT / "libs/jobs_client/src/jobs_client/client.py",
        ROOT / "libs/jobs_client/src/jobs_client/cli.py",
    ]
    names = set()
    for src in sources:
        names |= set(re.findall(r'"((?:JOBS|REDIS|WEB|POD|PROMETHEUS|GUNICORN)_[A-Z_]+)"', src.read_text()))
    assert names, "no variables found"
    missing = sorted(n for n in names if f"`{n}`" not in table)
    assert not missing, f"README Settings lacks {missing}"
