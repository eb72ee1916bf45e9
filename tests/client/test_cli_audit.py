"""``jobs audit`` and ``JobsClient.audit`` / ``iter_audit`` against a real API (gunicorn, Redis): every
``GET /audit`` filter, cursor paging (the printed next-page command works as printed), tenant scoping (a
tenant key never reads another tenant's entries, whatever it asks), table and JSON output, bad input."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from api.stack import ApiStack, http
from jobs_client import JobsAPIError, JobsClient
from jobs_client.cli_audit import parse_when

from client.test_cli import ValidatingJobsClient, jobs

ADMIN = "audit-cli-admin-key-0123"
ALICE = "audit-cli-alice-op-0123"
ALICE_VIEWER = "audit-cli-alice-viewer-0123"
BOB = "audit-cli-bob-op-0123"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    keys = f"ops:{ADMIN}:admin,alice:{ALICE}:operator,alice:{ALICE_VIEWER}:viewer,bob:{BOB}:operator"
    with ApiStack(tmp_path_factory.mktemp("audit-cli"), redis_url, workers=1, api_keys=keys) as s:
        yield s


@pytest.fixture(scope="module")
def cancelled(stack: ApiStack) -> dict[str, list[str]]:
    """Alice cancels three jobs, Bob one; Alice's viewer tries a queue pause (denied): the log to read."""
    made: dict[str, list[str]] = {"alice": [], "bob": []}
    for key, tenant, n in ((ALICE, "alice", 3), (BOB, "bob", 1)):
        client = JobsClient(stack.url, key)
        for _ in range(n):
            job = client.submit("sleep", {"seconds": 30}, delay=600)
            client.cancel(job["id"])
            made[tenant].append(job["id"])
    status, _, _ = http("POST", f"{stack.url}/queues/{stack.namespace}/pause",
                        headers={"Authorization": f"Bearer {ALICE_VIEWER}"})
    assert status == 403
    return made


def test_client_audit_filters_pages_and_tenants(stack: ApiStack, cancelled: dict[str, list[str]]) -> None:
    alice = ValidatingJobsClient(stack.url, ALICE)
    mine = [f"job:{j}" for j in reversed(cancelled["alice"])]  # newest first
    assert [e["target"] for e in alice.audit(action="job.cancel")["entries"]] == mine
    assert {e["tenant"] for e in alice.audit()["entries"]} == {"alice"}
    assert [e["target"] for e in alice.audit(tenant="bob", action="job.")["entries"]] == mine  # own, whatever asked
    first = alice.audit(action="job.cancel", limit=2)
    assert [e["target"] for e in first["entries"]] == mine[:2] and first["next"]
    rest = alice.audit(action="job.cancel", limit=2, before=first["next"])
    assert [e["target"] for e in rest["entries"]] == mine[2:]
    assert [e["target"] for e in alice.iter_audit(page_size=1, action="job.cancel")] == mine
    assert [e["action"] for e in alice.audit(outcome="denied")["entries"]] == ["queues.pause"]
    assert alice.audit(outcome="denied")["entries"][0]["role"] == "viewer"
    assert alice.audit(target=mine[1])["entries"][0]["target"] == mine[1]
    assert alice.audit(via="console")["entries"] == []
    assert alice.audit(since=datetime.now(UTC) + timedelta(hours=1))["entries"] == []
    assert len(alice.audit(since=datetime.now(UTC).replace(tzinfo=None) - timedelta(hours=1),
                           action="job.cancel")["entries"]) == 3  # naive datetime: UTC
    assert alice.audit(until="2001-01-01T00:00:00Z")["entries"] == []

    admin = ValidatingJobsClient(stack.url, ADMIN)
    assert [e["target"] for e in admin.audit(tenant="bob")["entries"]] == [f"job:{cancelled['bob'][0]}"]
    assert {e["tenant"] for e in admin.audit(action="job.cancel")["entries"]} == {"alice", "bob"}
    with pytest.raises(JobsAPIError) as e:
        alice.audit(outcome="maybe")
    assert e.value.status == 400 and e.value.errors[0]["path"] == "/query/outcome"
    with pytest.raises(JobsAPIError) as e:
        alice.audit(since="yesterday")
    assert e.value.status == 400 and e.value.errors[0]["path"] == "/query/since"


def test_cli_audit_table_json_and_paging(stack: ApiStack, cancelled: dict[str, list[str]]) -> None:
    mine = [f"job:{j}" for j in reversed(cancelled["alice"])]
    table = jobs(stack, "audit", "--action", "job.cancel", key=ALICE)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:6] == ["AT", "WHO", "KEY", "VIA", "ACTION", "TARGET"]
    assert [line.split()[5] for line in lines[1:]] == mine
    assert all(line.split()[1] == "alice/operator" and line.split()[4] == "job.cancel" for line in lines[1:])
    assert "(more:" not in table.stderr  # the whole log fits one page
    assert cancelled["bob"][0] not in table.stdout

    page = jobs(stack, "audit", "--action", "job.cancel", "--since", "10m", "--limit", "1", "--json", key=ALICE)
    assert page.returncode == 0, page.stderr
    body = json.loads(page.stdout)
    assert [e["target"] for e in body["entries"]] == mine[:1] and body["next"]
    more = page.stderr.strip()
    assert more.startswith("(more: jobs audit ") and more.endswith(f"--before {body['next']})")
    assert "--since 20" in more  # the time as sent, not "10m" again
    again = jobs(stack, *shlex.split(more[len("(more: jobs "):-1]), "--json", key=ALICE)  # as printed
    assert again.returncode == 0, again.stderr
    assert [e["target"] for e in json.loads(again.stdout)["entries"]] == mine[1:2]

    everything = jobs(stack, "audit", "--all", "--limit", "1", "--json", "--action", "job.", key=ALICE)
    assert [e["target"] for e in json.loads(everything.stdout)["entries"]] == mine
    assert json.loads(everything.stdout)["next"] is None and "(more:" not in everything.stderr
    denied = jobs(stack, "audit", "--outcome", "denied", key=ALICE_VIEWER)
    assert denied.returncode == 0 and "queues.pause" in denied.stdout and "denied" in denied.stdout

    admin = jobs(stack, "audit", "--tenant", "bob", "--json", key=ADMIN)
    assert [e["target"] for e in json.loads(admin.stdout)["entries"]] == [f"job:{cancelled['bob'][0]}"]
    bad = jobs(stack, "audit", "--since", "yesterday", key=ALICE)
    assert bad.returncode == 4 and "/query/since" in bad.stderr
    assert jobs(stack, "audit", "--outcome", "maybe", key=ALICE).returncode == 2  # argparse refuses it
    assert jobs(stack, "audit", key=None).returncode == 4  # 401: no key


def test_relative_times() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert parse_when("30m", now) == "2026-11-30T11:30:00Z"
    assert parse_when("2h", now) == "2026-11-30T10:00:00Z" and parse_when("7d", now) == "2026-11-23T12:00:00Z"
    assert parse_when("2026-01-01T00:00:00Z", now) == "2026-01-01T00:00:00Z" and parse_when(None) is None
    assert parse_when("soon", now) == "soon"  # passed on: the API names it
