"""``/webhooks/subscription`` and webhook destinations on ``POST /workflows`` and ``depends_on`` through the
app (real Redis, responses checked against /openapi.json): create, replace, read, delete, per tenant; the
url refused by the same guard as a callback_url; workflow nodes and dependent jobs keep their callback_url
and get their events when a failure cascades; an Idempotency-Key repeat with another callback_url is 422."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jobs_core.config import Settings, load_api_keys
from jobs_core.store import JobStore

from api.conftest import TASKS, Runner, make_app

ALICE = "alice-operator-0123456789"
ALICE_VIEWER = "alice-viewer-0123456789"
BOB = "bob-operator-0123456789"
KEYS = f"alice:{ALICE},alice:{ALICE_VIEWER}:viewer,bob:{BOB}"
PATH = "/webhooks/subscription"


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def keyed(settings: Settings, store: JobStore) -> FlaskClient:
    store.publish_tasks(TASKS)
    app: Flask = make_app(settings.replace(api_keys=load_api_keys({"JOBS_API_KEYS": KEYS})), store)
    return app.test_client()


def _outbox(store: JobStore) -> list[tuple[str, str, str]]:
    return sorted((f[b"event"].decode(), f[b"status"].decode(), f[b"url"].decode())
                  for _, f in store.redis.xrange(store.keys.webhook_outbox))


def test_subscription_lifecycle_per_tenant(keyed: FlaskClient, store: JobStore, runner: Runner) -> None:
    assert keyed.get(PATH, headers=_h(ALICE)).status_code == 404
    made = keyed.put(PATH, json={"url": "https://hooks.example.com/a", "statuses": ["failed", "failed"]},
                     headers=_h(ALICE))
    assert made.status_code == 422  # uniqueItems
    made = keyed.put(PATH, json={"url": "https://hooks.example.com/a", "statuses": ["failed", "cancelled"]},
                     headers=_h(ALICE))
    assert made.status_code == 201 and made.headers["Location"] == PATH
    body = made.get_json()
    assert body["statuses"] == ["cancelled", "failed"] and body["tasks"] is None
    assert keyed.get(PATH, headers=_h(ALICE_VIEWER)).get_json() == body  # a viewer reads it
    assert keyed.put(PATH, json={"url": "https://x.example/"}, headers=_h(ALICE_VIEWER)).status_code == 403
    assert keyed.get(PATH, headers=_h(BOB)).status_code == 404  # another tenant's is not visible
    replaced = keyed.put(PATH, json={"url": "https://hooks.example.com/b", "tasks": ["echo"]}, headers=_h(ALICE))
    assert replaced.status_code == 200
    assert replaced.get_json()["created_at"] == body["created_at"] and replaced.get_json()["statuses"] is None
    # it is alice's jobs that are sent there, not bob's
    mine = keyed.post("/jobs", json={"task": "echo"}, headers=_h(ALICE)).get_json()["id"]
    bobs = keyed.post("/jobs", json={"task": "echo"}, headers=_h(BOB)).get_json()["id"]
    runner.succeed(mine)
    runner.succeed(bobs)
    assert _outbox(store) == [(f"{mine}:1:subscription", "succeeded", "https://hooks.example.com/b")]
    assert keyed.delete(PATH, headers=_h(BOB)).status_code == 404
    assert keyed.delete(PATH, headers=_h(ALICE)).status_code == 204
    assert keyed.get(PATH, headers=_h(ALICE)).status_code == 404
    assert keyed.delete(PATH, headers=_h(ALICE)).status_code == 404


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://example.com/", "https://127.0.0.1/",
                                 "https://[fe80::1]/", "https://u:p@example.com/"])
def test_subscription_url_is_checked_like_a_callback_url(keyed: FlaskClient, url: str) -> None:
    resp = keyed.put(PATH, json={"url": url}, headers=_h(ALICE))
    assert resp.status_code == 422 and resp.content_type == "application/problem+json"
    (error,) = resp.get_json()["errors"]
    assert error["path"] == "/url" and error["message"].startswith("url ")
    job = keyed.post("/jobs", json={"task": "echo", "callback_url": url}, headers=_h(ALICE))
    assert job.status_code == 422 and job.get_json()["errors"][0]["path"] == "/callback_url"
    assert keyed.get(PATH, headers=_h(ALICE)).status_code == 404


def test_workflow_nodes_and_dependent_jobs_take_a_callback_url(keyed: FlaskClient, store: JobStore,
                                                               runner: Runner) -> None:
    cb = "https://hooks.example.com/node"
    wf = keyed.post("/workflows", json={"nodes": [
        {"name": "a", "task": "echo", "callback_url": cb},
        {"name": "b", "task": "echo", "depends_on": ["a"], "callback_url": cb},
        {"name": "c", "task": "echo", "depends_on": ["b"], "callback_url": cb},
    ]}, headers=_h(ALICE))
    assert wf.status_code == 201, wf.get_json()
    a, b, c = (n["job_id"] for n in wf.get_json()["nodes"])
    assert keyed.get(f"/jobs/{b}", headers=_h(ALICE)).get_json()["webhook"]["callback_url"] == cb
    dep = keyed.post("/jobs", json={"task": "echo", "depends_on": [a], "callback_url": cb}, headers=_h(ALICE))
    assert dep.status_code == 202 and dep.get_json()["status"] == "waiting"
    assert dep.get_json()["webhook"] == {"callback_url": cb, "attempts": [], "delivered": False, "delivered_to": []}
    d = dep.get_json()["id"]
    runner.fail(a)  # the cascade cancels b, c and d: each transition gets its event, in the same step
    assert _outbox(store) == sorted([(f"{a}:1", "failed", cb), (f"{b}:1", "cancelled", cb),
                                     (f"{c}:1", "cancelled", cb), (f"{d}:1", "cancelled", cb)])
    bad = keyed.post("/workflows", json={"nodes": [{"name": "a", "task": "echo"},
                                                   {"name": "b", "task": "echo", "callback_url": "ftp://x.example/"}]},
                     headers=_h(ALICE))
    assert bad.status_code == 422 and bad.get_json()["errors"][0]["path"] == "/nodes/1/callback_url"


@pytest.mark.parametrize("path,body,other", [
    ("/jobs", {"task": "echo", "callback_url": "https://a.example/"}, {"callback_url": "https://b.example/"}),
    ("/jobs", {"task": "echo", "callback_url": "https://a.example/"}, {"callback_url": None}),
    ("/jobs/batch", {"jobs": [{"task": "echo", "callback_url": "https://a.example/"}]},
     {"jobs": [{"task": "echo", "callback_url": "https://b.example/"}]}),
])
def test_idempotency_key_repeat_with_another_callback_url_is_refused(keyed: FlaskClient, path: str,
                                                                     body: dict[str, Any],
                                                                     other: dict[str, Any]) -> None:
    h = {**_h(ALICE), "Idempotency-Key": "same-key"}
    first = keyed.post(path, json=body, headers=h)
    assert first.status_code == 202
    again = keyed.post(path, json=body, headers=h)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    changed = {k: v for k, v in {**body, **other}.items() if v is not None}
    refused = keyed.post(path, json=changed, headers=h)
    assert refused.status_code == 422 and "Idempotency-Key" in refused.get_json()["detail"]
