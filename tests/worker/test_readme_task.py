"""The README's "Writing a task" section followed to the letter: its module written to a folder of its own,
the worker started there with the documented command, the documented requests sent to a real API, the
documented outputs and JSON log lines checked, and the documented unit test run with pytest."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api.stack import ROOT, ApiStack
from support.procs import VENV_BIN, stop, wait_for

README = ROOT / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Writing a task")
    return text[start : text.index("\n## ", start + 1)]


def block(text: str, lang: str, first_line: str | None = None, after: str | None = None) -> str:
    """The first ``lang`` code block (after ``after``; starting with ``first_line``), dedented."""
    if after is not None:
        text = text[text.index(after):]
    for match in re.finditer(rf"^( *)```{lang}\n(.*?)^\1```", text, flags=re.S | re.M):
        indent, body = match.group(1), match.group(2)
        lines = [line[len(indent):] for line in body.splitlines()]
        if first_line is None or lines[0].startswith(first_line):
            return "\n".join(lines) + "\n"
    raise AssertionError(f"no {lang} block {first_line or ''} in the README section")


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[ApiStack]:
    s = ApiStack(tmp_path / "stack", redis_url, workers=0).start()
    try:
        yield s
    finally:
        s.stop()


def user_env(stack: ApiStack) -> dict[str, str]:
    """A user's shell with the virtualenv active and REDIS_URL set (nothing of the test suite's own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBS_", "REDIS_", "PYTHONPATH"))}
    env.update({k: v for k, v in stack.env.items() if k.startswith(("REDIS_", "JOBS_KEY_PREFIX", "JOBS_QUEUE"))})
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_writing_a_task_as_documented(stack: ApiStack, tmp_path: Path) -> None:
    doc = section()
    project = tmp_path / "my-project"
    project.mkdir()
    module = block(doc, "python", "# mytasks.py")
    (project / "mytasks.py").write_text(module)
    run = block(doc, "sh", after="**Run it.**").strip()
    assert run == "JOBS_TASK_MODULES=mytasks jobs-worker"
    env = user_env(stack)
    log = tmp_path / "worker.out"
    with open(log, "wb") as out:
        worker = subprocess.Popen(["bash", "-c", run], cwd=project, env=env, stdout=out,
                                  stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: "worker started" in log.read_text(), 60, interval=0.2, what="the worker to start")
        requests = block(doc, "sh", "curl -s -X POST").replace("http://127.0.0.1:8000", stack.url)
        submit, wait, result = _commands(requests)
        job = json.loads(_sh(submit, project, env))
        job_id = job["id"]
        waited = _sh(wait.replace("<id>", job_id), project, env)
        for shown in _comment(wait).split(", "):
            assert shown in waited, (shown, waited)
        body = _sh(result.replace("<id>", job_id), project, env)
        assert json.loads(body) == json.loads(_comment(result))
    finally:
        assert stop(worker) == 0
        assert worker.stderr is not None and worker.stderr.read() == b""  # nothing unstructured

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    mine = {line["msg"]: line for line in lines if line.get("job") == job_id and line["logger"] != "jobs.worker"}
    context = {"job": job_id, "task": "wordcount", "attempt": 1, "queue": stack.namespace, "tenant": "default"}
    for line in mine.values():
        assert {k: line.get(k) for k in context} == context, line
    assert mine["counting"]["logger"] == "task.wordcount" and mine["counting"]["words"] == 5
    assert mine["top word: the"]["level"] == "warning" and mine["top word: the"]["logger"] == "mytasks"
    assert mine["done with 5 words"]["stream"] == "stdout"

    # the unit test, with the command its first line gives
    unit = block(doc, "python", "# test_mytasks.py")
    (project / "test_mytasks.py").write_text(unit)
    command = re.search(r"run with: (.*)$", unit.splitlines()[0]).group(1)  # type: ignore[union-attr]
    proc = subprocess.run(["bash", "-c", command + " -q -p no:cacheprovider"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def _commands(requests: str) -> list[str]:
    """The block's commands (a backslash continues a line)."""
    joined = requests.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip()]


def _comment(command: str) -> str:
    return command.split("#", 1)[1].strip()


def _sh(command: str, cwd: Path, env: dict[str, Any]) -> str:
    proc = subprocess.run(["bash", "-c", command.split("#", 1)[0]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
