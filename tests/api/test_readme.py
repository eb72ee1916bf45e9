"""The README's HTTP API examples run as written against a real stack (auth off, as `make run` has it)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    assert '"count":148933' in out  # primes <= 2,000,000: the result example got a real result
    assert '"job_status"' not in out.split('"count":148933')[0][-200:]
    assert '"title":"Validation failed"' in out and '"/params/limit"' in out
    assert '"status":"ready"' in out and "jobs_queue_jobs" in out
    assert '"next_cursor"' in out and '"tasks"' in out
    assert '"/jobs/1/params/limit"' in out and '"invalid_items":[1]' in out  # the bad batch
    assert '"priority":9' in out and '"queues":[' in out
    for shown in ('"paused":true', '"paused":false', '"cap":2', '"cap":null'):
        assert shown in out, shown
    decoder = json.JSONDecoder()
    for line in out.splitlines():
        pos = 0
        while line.startswith("{", pos):  # a result (raw bytes, no newline) may share a line
            body, pos = decoder.raw_decode(line, pos)
            assert body.get("status") != 500


def test_quick_start_curl_runs_as_written(stack: ApiStack) -> None:
    text = README.read_text()
    block = _shell_blocks(_section(text, "## Quick start", "## HTTP API"))[1]
    curl = "\n".join(line for line in block.replace("\\\n", "").splitlines() if line.startswith("curl"))
    proc = subprocess.run(["bash", "-c", curl.replace("http://127.0.0.1:8000", stack.url)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["status"] == "queued"


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
