"""``jobs schedule ...`` end to end (real console script, real API) and the JobsClient schedule methods."""

from __future__ import annotations

import json

import pytest
from api.stack import ApiStack
from jobs_client import JobsAPIError, JobsClient

from client.test_cli import client, jobs, stack  # noqa: F401 - fixtures shared with the CLI tests


def test_client_schedule_methods(client: JobsClient) -> None:  # noqa: F811
    created = client.put_schedule("cl-nightly", "echo", "0 3 * * *", {"a": 1}, timezone="Asia/Tokyo",
                                  catchup="all", overlap="skip")
    assert created["timezone"] == "Asia/Tokyo" and created["catchup"] == "all" and created["params"] == {"a": 1}
    assert client.schedule("cl-nightly")["next_runs"][0].endswith("T18:00:00.000Z")  # 03:00 Tokyo
    assert "cl-nightly" in [s["name"] for s in client.schedules()]
    assert client.pause_schedule("cl-nightly")["paused"] is True
    assert client.resume_schedule("cl-nightly")["paused"] is False
    client.delete_schedule("cl-nightly")
    with pytest.raises(JobsAPIError) as e:
        client.schedule("cl-nightly")
    assert e.value.status == 404
    with pytest.raises(JobsAPIError) as e:
        client.put_schedule("cl-bad", "echo", "every day")
    assert e.value.status == 422 and e.value.errors[0]["path"] == "/cron"


def test_cli_schedule_commands(stack: ApiStack) -> None:  # noqa: F811
    out = jobs(stack, "schedule", "put", "cli-report", "echo", "*/15 * * * *", "kind=daily", "--timezone",
               "Europe/Paris", "--overlap", "skip")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("cli-report") and "Europe/Paris" in out.stdout
    got = jobs(stack, "schedule", "get", "cli-report")
    body = json.loads(got.stdout)
    assert body["params"] == {"kind": "daily"} and body["overlap"] == "skip" and len(body["next_runs"]) == 5
    assert "paused" in jobs(stack, "schedule", "pause", "cli-report").stdout
    listed = jobs(stack, "schedule", "list", "--json")
    assert [s["name"] for s in json.loads(listed.stdout)["schedules"]] == ["cli-report"]
    assert jobs(stack, "schedule", "delete", "cli-report").returncode == 0
    missing = jobs(stack, "schedule", "get", "cli-report")
    assert missing.returncode == 4 and "no schedule named" in missing.stderr
    bad = jobs(stack, "schedule", "put", "cli-bad", "echo", "* * *")
    assert bad.returncode == 4 and "/cron" in bad.stderr


def test_client_and_cli_workflows(stack: ApiStack, client: JobsClient, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    wf = client.submit_workflow([{"name": "a", "task": "echo", "params": {"x": 1}},
                                 {"name": "b", "task": "echo", "depends_on": ["a"]}])
    assert [n["status"] for n in wf["nodes"]][1] in ("waiting", "queued", "running", "succeeded")
    assert client.workflow(wf["id"])["id"] == wf["id"]
    path = tmp_path / "flow.json"
    path.write_text(json.dumps({"nodes": [{"name": "first", "task": "echo"},
                                          {"name": "second", "task": "echo", "depends_on": ["first"]}]}))
    out = jobs(stack, "workflow", "submit", str(path), "--wait")
    assert out.returncode == 0, out.stderr
    assert "succeeded" in out.stdout.splitlines()[0] and "second" in out.stdout
    wf_id = out.stdout.split()[1]
    status = jobs(stack, "workflow", "status", wf_id, "--json")
    assert json.loads(status.stdout)["status"] == "succeeded"
    path.write_text(json.dumps({"nodes": [{"name": "a", "task": "echo", "depends_on": ["a"]}]}))
    bad = jobs(stack, "workflow", "submit", str(path))
    assert bad.returncode == 4 and "depends on itself" in bad.stderr
    assert jobs(stack, "workflow", "submit", str(tmp_path / "missing.json")).returncode == 2
    first = client.submit("sleep", {"seconds": 30})
    waiting = client.submit("echo", depends_on=[first["id"]], delay=1, idempotency_key="dep-once")
    assert waiting["status"] == "waiting"
    assert client.submit("echo", depends_on=[first["id"]], delay=1, idempotency_key="dep-once")["id"] == waiting["id"]
    listed = jobs(stack, "list", "--status", "waiting", "--json")
    assert listed.returncode == 0, listed.stderr
    assert waiting["id"] in [j["id"] for j in json.loads(listed.stdout)["jobs"]]
    nodes = [{"name": "only", "task": "echo"}]
    assert client.submit_workflow(nodes, idempotency_key="wf-once")["id"] == \
        client.submit_workflow(nodes, idempotency_key="wf-once")["id"]
    client.cancel(first["id"])
