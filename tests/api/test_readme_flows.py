"""The README's schedule examples run as written against a real stack (auth off, as `make run` has it)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from support.procs import wait_for

from api.stack import ROOT, ApiStack, http
from api.test_readme import README, _section, _shell_blocks


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    s = ApiStack(tmp_path_factory.mktemp("readme-flows"), redis_url, workers=1).start()
    try:
        yield s
    finally:
        s.stop()


def run_blocks(stack: ApiStack, start: str, end: str) -> str:
    blocks = _shell_blocks(_section(README.read_text(), start, end))
    assert blocks
    script = "set -euo pipefail\n" + "\n".join(blocks).replace("http://127.0.0.1:8000", stack.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")} | {"JOBS_URL": stack.url}
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def test_schedule_examples_run_as_written(stack: ApiStack) -> None:
    out = run_blocks(stack, "## Schedules", "**Where the ticking runs")
    bodies = [json.loads(line) for line in out.splitlines() if line.startswith("{\"")]  # curl: one per line
    heartbeat = [b for b in bodies if b.get("name") == "heartbeat"]
    assert heartbeat[-1]["fired"] >= 1 and heartbeat[-1]["last_job"]
    nightly = [b for b in bodies if b.get("name") == "nightly-report"]
    assert nightly[0]["timezone"] == "Europe/Paris" and nightly[0]["next_runs"][0].endswith(("T01:00:00.000Z",
                                                                                            "T00:00:00.000Z"))
    assert [b["paused"] for b in nightly[-2:]] == [True, False]
    assert "204" in out.splitlines()
    assert "report" in out and "America/New_York" in out


def test_workflow_examples_run_as_written(stack: ApiStack) -> None:
    out = run_blocks(stack, "## Workflows", "**Exactly-once release")
    bodies = [json.loads(line) for line in out.splitlines() if line.startswith("{\"")]
    workflows = [b for b in bodies if "nodes" in b]
    assert {n["name"]: n["status"] for n in workflows[0]["nodes"]}["report"] == "waiting"
    assert workflows[1]["status"] == "succeeded"
    cycle = next(b for b in bodies if b.get("status") == 422)
    assert "dependency cycle among nodes 'a', 'b'" in cycle["detail"]
    dependent = next(b for b in bodies if b.get("status") == "waiting" and b.get("task") == "echo")
    assert bodies[-1]["task"] == "sleep" and bodies[-1]["status"] in ("cancelled", "running")

    def dependent_status() -> bool:
        return bool(json.loads(http("GET", f"{stack.url}/jobs/{dependent['id']}")[2])["status"] == "cancelled")

    wait_for(dependent_status, timeout=30, what="the dependent cancelled with its dependency")
    assert "succeeded" in out.splitlines()[-3]  # `jobs workflow submit --wait`: the workflow line


def test_audit_examples_run_as_written(stack: ApiStack) -> None:
    """The `jobs audit` examples (README "Console"), auth off as with `make run`: you are default's admin."""
    out = run_blocks(stack, "**Audit log: `GET /audit`.**", "**Bulk actions**")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("AT "))
    row = lines[header + 1].split()
    assert row[1] == "default/admin" and row[3] == "api" and row[4] == "job.cancel" and row[5].startswith("job:")
    start = lines.index("{")
    page = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
    assert [e["action"] for e in page["entries"]] == ["job.cancel"] and "next" in page  # a full page: a cursor
    assert lines[-1].split()[:2] == ["AT", "WHO"]  # no refused action: the header alone
