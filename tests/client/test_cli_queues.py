"""``jobs submit --file`` / ``--priority``, ``jobs queues`` / ``jobs queue ...`` and the matching JobsClient
methods against a real API (no worker runs, so what is queued stays queued and is counted exactly)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from api.conftest import TASKS
from api.stack import BIN, ApiStack
from jobs_client import MAX_BATCH_JOBS, JobsAPIError, JobsClient
from jobs_core.store import JobStore

from client.test_cli import ValidatingJobsClient, cli_env

OPERATOR = "cliq-operator-key"
ADMIN = "cliq-admin-key"
VIEWER = "cliq-viewer-key"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    s = ApiStack(tmp_path_factory.mktemp("cliq-stack"), redis_url, workers=0,
                 api_keys=f"cliq:{OPERATOR},cliq:{ADMIN}:admin,cliq:{VIEWER}:viewer")
    s.store().publish_tasks([replace(t, queue=s.namespace) for t in TASKS])
    with s:
        yield s


@pytest.fixture
def store(stack: ApiStack) -> JobStore:
    return stack.store()


@pytest.fixture
def admin(stack: ApiStack) -> Iterator[JobsClient]:
    client = ValidatingJobsClient(stack.url, ADMIN)
    yield client
    client.resume_queue(stack.namespace)  # the module's one queue runs again for the next test
    client.set_queue_cap(stack.namespace, None)


def jobs(stack: ApiStack, *args: str, key: str = OPERATOR,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "jobs"), *args], env=cli_env(stack.url, key), capture_output=True, text=True,
                          timeout=60, input=stdin)


def _waiting(store: JobStore, queue: str) -> int:
    return store.queue_stats(queue).waiting


def test_submit_file_queues_every_line(stack: ApiStack, store: JobStore, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"task": "echo", "params": {"n": 1}}\n\n{"task": "primes", "params": {"limit": 10}, '
                    '"priority": 9}\n{"task": "sleep"}\n')
    before = _waiting(store, stack.namespace)
    out = jobs(stack, "submit", "--file", str(path), "--priority", "2")
    assert out.returncode == 0, out.stderr
    ids = out.stdout.split()
    assert len(ids) == 3 and "queued 3 jobs" in out.stderr
    client = JobsClient(stack.url, OPERATOR)
    assert [client.get(i)["priority"] for i in ids] == [2, 9, 2]  # --priority for the lines that do not say
    assert _waiting(store, stack.namespace) == before + 3
    # stdin, and --json
    out = jobs(stack, "submit", "--file", "-", "--json", stdin='{"task": "echo"}\n')
    assert out.returncode == 0 and [j["task"] for j in json.loads(out.stdout)["jobs"]] == ["echo"]


def test_submit_file_with_a_bad_line_queues_nothing(stack: ApiStack, store: JobStore, tmp_path: Path) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"task": "echo"}\n{"task": "primes", "params": {"limit": "many"}}\n\n{"task": "nope"}\n')
    before = _waiting(store, stack.namespace)
    out = jobs(stack, "submit", "--file", str(path))
    assert out.returncode == 4
    assert f"{path}:2: /params/limit:" in out.stderr and f"{path}:4: /task:" in out.stderr
    assert "nothing of lines 1-4 was queued" in out.stderr
    assert _waiting(store, stack.namespace) == before


def test_submit_file_over_the_batch_limit_goes_in_batches(stack: ApiStack, store: JobStore, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text("".join(f'{{"task": "echo", "params": {{"n": {i}}}}}\n' for i in range(MAX_BATCH_JOBS + 5)))
    before = _waiting(store, stack.namespace)
    out = jobs(stack, "submit", "--file", str(path))
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == MAX_BATCH_JOBS + 5
    assert _waiting(store, stack.namespace) == before + MAX_BATCH_JOBS + 5


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ('{"task": "echo"}\nnot json\n', [], ":2: not valid JSON"),
        ('[1]\n', [], ":1: each line must be a JSON object"),
        ("\n\n", [], "no jobs in it"),
        ('{"task": "echo"}\n', ["echo"], "give no TASK"),
        ('{"task": "echo"}\n', ["--wait"], "give no TASK, params or --wait"),
    ],
)
def test_submit_file_usage_errors(stack: ApiStack, tmp_path: Path, content: str, args: list[str], message: str) -> None:
    path = tmp_path / "jobs.jsonl"
    path.write_text(content)
    out = jobs(stack, "submit", "--file", str(path), *args)
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_submit_without_a_file_or_task_is_a_usage_error(stack: ApiStack, tmp_path: Path) -> None:
    """Once, not once per bad file above: each call is a CLI process of its own."""
    assert jobs(stack, "submit", "--file", str(tmp_path / "missing")).returncode == 2
    assert "give a TASK" in jobs(stack, "submit").stderr


def test_submit_priority(stack: ApiStack) -> None:
    out = jobs(stack, "submit", "echo", "--priority", "8", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["priority"] == 8
    bad = jobs(stack, "submit", "echo", "--priority", "10")
    assert bad.returncode == 4 and "/priority" in bad.stderr


def test_queues_and_queue_commands(stack: ApiStack, store: JobStore, admin: JobsClient) -> None:
    q = stack.namespace
    out = jobs(stack, "queues", key=VIEWER)
    assert out.returncode == 0 and out.stdout.startswith("QUEUE") and q in out.stdout
    listed = json.loads(jobs(stack, "queues", "--json").stdout)["queues"]
    assert q in [x["name"] for x in listed]
    shown = json.loads(jobs(stack, "queue", "show", q).stdout)
    assert shown["name"] == q and shown["paused"] is False
    # changes need an admin key
    refused = jobs(stack, "queue", "pause", q)
    assert refused.returncode == 4 and "403" in refused.stderr and "admin" in refused.stderr
    assert store.queue_stats(q).paused is False
    out = jobs(stack, "queue", "pause", q, key=ADMIN)
    assert out.returncode == 0 and store.queue_stats(q).paused is True
    assert json.loads(jobs(stack, "queue", "resume", q, "--json", key=ADMIN).stdout)["paused"] is False
    assert jobs(stack, "queue", "cap", q, "3", key=ADMIN).returncode == 0 and store.queue_stats(q).cap == 3
    assert jobs(stack, "queue", "cap", q, "none", key=ADMIN).returncode == 0 and store.queue_stats(q).cap is None
    for args in (["cap", q], ["cap", q, "0"], ["cap", q, "x"], ["pause", q, "3"], ["stop", q]):
        assert jobs(stack, "queue", *args, key=ADMIN).returncode == 2, args
    missing = jobs(stack, "queue", "pause", "no-such-queue", key=ADMIN)
    assert missing.returncode == 4 and "404" in missing.stderr


def test_client_queue_methods(stack: ApiStack, admin: JobsClient) -> None:
    q = stack.namespace
    assert q in [x["name"] for x in admin.queues()]
    assert admin.pause_queue(q)["paused"] is True
    assert admin.queue(q)["paused"] is True
    assert admin.resume_queue(q)["paused"] is False
    assert admin.set_queue_cap(q, 2)["cap"] == 2
    assert admin.set_queue_cap(q, None)["cap"] is None
    with pytest.raises(JobsAPIError) as e:
        ValidatingJobsClient(stack.url, OPERATOR).pause_queue(q)
    assert e.value.status == 403


def test_client_submit_many(stack: ApiStack) -> None:
    client = ValidatingJobsClient(stack.url, OPERATOR)
    jobs_ = client.submit_many([{"task": "echo", "params": {"n": 1}}, {"task": "echo", "priority": 0}],
                               idempotency_key="cliq-batch-1")
    assert [j["priority"] for j in jobs_] == [5, 0]
    again = client.submit_many([{"task": "echo", "params": {"n": 1}}, {"task": "echo", "priority": 0}],
                               idempotency_key="cliq-batch-1")
    assert [j["id"] for j in again] == [j["id"] for j in jobs_]
    with pytest.raises(JobsAPIError) as e:
        client.submit_many([{"task": "echo"}, {"task": "primes", "params": {"limit": 1}}])
    assert e.value.status == 422 and e.value.errors[0]["path"] == "/jobs/1/params/limit"
    assert e.value.problem["invalid_items"] == [1]


def test_tasks_show_their_queue(stack: ApiStack) -> None:
    out = jobs(stack, "tasks")
    assert out.returncode == 0
    # no worker runs in this stack: every task is on the default queue and waits for one
    assert f"queue: {stack.namespace} (no live worker offers it: its jobs wait)" in out.stdout
