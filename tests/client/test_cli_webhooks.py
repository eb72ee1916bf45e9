"""``jobs webhook ...`` and ``jobs submit --callback-url`` end to end (real console script, gunicorn API with
its dispatchers, a worker, a real loopback receiver) and the JobsClient webhook methods: a tenant
subscription and a callback both delivered, signed with the rotated secret, attempts shown per destination."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from api.stack import ApiStack
from jobs_client import JobsAPIError, JobsClient
from standardwebhooks.webhooks import Webhook
from support.procs import wait_for
from support.webhook_receiver import Receiver

from client.test_cli import ValidatingJobsClient, jobs

ADMIN = "hooks-admin-key-0123"
VIEWER = "hooks-viewer-key-0123"
HOOK_ENV = {"JOBS_WEBHOOK_ALLOW_HTTP": "1", "JOBS_WEBHOOK_ALLOW_PRIVATE": "1", "JOBS_WEBHOOK_RETRY_SECONDS": "0.2",
            "JOBS_WEBHOOK_TIMEOUT_SECONDS": "2"}


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    s = ApiStack(tmp_path_factory.mktemp("hooks-stack"), redis_url, workers=1,
                 api_keys=f"hooks:{ADMIN}:admin,hooks:{VIEWER}:viewer", extra_env=HOOK_ENV).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def client(stack: ApiStack) -> JobsClient:
    return ValidatingJobsClient(stack.url, ADMIN)


def test_client_webhook_methods(client: JobsClient, receiver: Receiver) -> None:
    assert client.webhook_subscription() is None
    secret = client.rotate_webhook_secret()["secret"]
    tenant_url = receiver.url.replace("/hook", "/tenant")
    sub = client.put_webhook_subscription(tenant_url, statuses=["succeeded", "failed"])
    assert sub["url"] == tenant_url and sub["statuses"] == ["failed", "succeeded"] and sub["tasks"] is None
    assert client.webhook_subscription() == sub
    job = client.submit("echo", {"n": 1}, callback_url=receiver.url)
    assert client.wait(job["id"], timeout=60)["status"] == "succeeded"
    wait_for(lambda: client.webhook_deliveries(job["id"])["delivered_to"] == ["callback", "subscription"],
             timeout=60, what="both deliveries")
    hook = client.webhook_deliveries(job["id"])
    assert hook["callback_url"] == receiver.url and hook["delivered"] is True
    assert {a["event"]: a["destination"] for a in hook["attempts"]} == {
        f"{job['id']}:1": "callback", f"{job['id']}:1:subscription": "subscription"}
    for headers, body in receiver.received:
        assert Webhook(secret).verify(body, headers)["data"]["id"] == job["id"]
    with pytest.raises(JobsAPIError) as e:
        client.put_webhook_subscription("ftp://example.com/")
    assert e.value.status == 422 and e.value.errors[0]["path"] == "/url"
    plain = client.submit("echo", {})  # no callback: the subscription's attempts only
    client.wait(plain["id"], timeout=60)
    wait_for(lambda: client.webhook_deliveries(plain["id"])["delivered_to"] == ["subscription"], timeout=60,
             what="the subscription's delivery")
    assert client.webhook_deliveries(plain["id"])["callback_url"] is None
    client.delete_webhook_subscription()
    assert client.webhook_subscription() is None
    with pytest.raises(JobsAPIError) as e:
        client.delete_webhook_subscription()
    assert e.value.status == 404


def test_cli_webhook_commands(stack: ApiStack, receiver: Receiver) -> None:
    secret = jobs(stack, "webhook", "rotate-secret", key=ADMIN)
    assert secret.returncode == 0, secret.stderr
    assert secret.stdout.strip().startswith("whsec_") and "keeps signing" in secret.stderr
    assert jobs(stack, "webhook", "rotate-secret", key=VIEWER).returncode == 4  # admin only
    missing = jobs(stack, "webhook", "subscription", "get", key=ADMIN)
    assert missing.returncode == 4 and "no webhook subscription" in missing.stderr
    made = jobs(stack, "webhook", "subscription", "set", receiver.url, "--status", "failed", "--task", "fail",
                key=ADMIN)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["tasks"] == ["fail"]
    got = jobs(stack, "webhook", "subscription", "get", key=VIEWER)  # a viewer reads it
    assert got.returncode == 0 and json.loads(got.stdout)["statuses"] == ["failed"]
    assert jobs(stack, "webhook", "subscription", "delete", key=VIEWER).returncode == 4
    bad = jobs(stack, "webhook", "subscription", "set", "ftp://x.example/", key=ADMIN)  # (loopback allowed here)
    assert bad.returncode == 4 and "/url: url must be https:// or http://" in bad.stderr
    assert jobs(stack, "webhook", "subscription", "set", receiver.url, "--status", "queued",
                key=ADMIN).returncode == 2  # argparse: not a terminal status
    failed = jobs(stack, "submit", "fail", "--max-attempts", "1", "--callback-url", receiver.url, "--wait", "-q",
                  key=ADMIN)
    assert failed.returncode == 1, failed.stderr
    job_id = failed.stderr.split()[1]  # "submitted <id>"
    wait_for(lambda: len(receiver.received) >= 2, timeout=60, what="callback and subscription deliveries")
    shown = jobs(stack, "webhook", "deliveries", job_id, key=VIEWER)
    assert shown.returncode == 0, shown.stderr
    assert f"{job_id}:1:subscription" in shown.stdout and "delivered to: callback, subscription" in shown.stdout
    as_json = json.loads(jobs(stack, "webhook", "deliveries", job_id, "--json", key=VIEWER).stdout)
    assert {a["status_code"] for a in as_json["attempts"]} == {200}
    Webhook(secret.stdout.strip()).verify(receiver.received[0][1], receiver.received[0][0])
    bad_cb = jobs(stack, "submit", "echo", "--callback-url", "ftp://x.example/", key=ADMIN)
    assert bad_cb.returncode == 4 and "/callback_url" in bad_cb.stderr
    assert jobs(stack, "webhook", "subscription", "delete", key=ADMIN).stdout.strip() == "webhook subscription deleted"
    assert jobs(stack, "webhook", "deliveries", "00000000-0000-4000-8000-000000000000", key=ADMIN).returncode == 4
