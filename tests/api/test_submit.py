"""POST /jobs: acceptance, defaults, every validation error, idempotency and backpressure."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from jobs_core.config import Settings
from jobs_core.store import JobStore

from api.conftest import TASKS, make_app


def _errors(resp: Any) -> list[dict[str, str]]:
    body = resp.get_json(force=True)
    return list(body.get("errors") or [])


def test_submit_returns_202_location_and_the_queued_job(client: FlaskClient, store: JobStore) -> None:
    resp = client.post("/jobs", json={"task": "sleep", "params": {"seconds": 2}})
    assert resp.status_code == 202
    job = resp.get_json()
    assert resp.headers["Location"] == f"/jobs/{job['id']}"
    assert uuid.UUID(job["id"]).version == 4
    assert job["status"] == "queued" and job["task"] == "sleep" and job["params"] == {"seconds": 2}
    assert job["attempts"] == 0 and job["progress"] is None and job["error"] is None
    assert job["links"] == {"self": f"/jobs/{job['id']}", "result": f"/jobs/{job['id']}/result"}
    assert job["created_at"].endswith("Z") and job["started_at"] is None and job["finished_at"] is None
    # really stored and queued (hotqueue's list holds the JSON-encoded id)
    assert store.get(job["id"]).status.value == "queued"
    assert store.redis.lrange(store.keys.queue, 0, -1) == [f'"{job["id"]}"'.encode()]


def test_task_defaults_are_applied_before_storing(client: FlaskClient) -> None:
    job = client.post("/jobs", json={"task": "sleep"}).get_json()
    assert job["params"] == {"seconds": 1}
    job = client.post("/jobs", json={"task": "sleep", "params": {"seconds": 0.5}}).get_json()
    assert job["params"] == {"seconds": 0.5}


def test_task_and_global_defaults_for_attempts_and_timeout(client: FlaskClient, settings: Settings) -> None:
    job = client.post("/jobs", json={"task": "primes", "params": {"limit": 10}}).get_json()
    assert (job["max_attempts"], job["timeout"]) == (5, 120.0)  # the task's own defaults
    job = client.post("/jobs", json={"task": "echo"}).get_json()
    assert (job["max_attempts"], job["timeout"]) == (settings.default_max_attempts, settings.default_timeout_seconds)
    job = client.post("/jobs", json={"task": "echo", "max_attempts": 7, "timeout": 2.5, "delay": 0}).get_json()
    assert (job["max_attempts"], job["timeout"]) == (7, 2.5)


def test_delayed_job_is_not_in_the_queue_yet(client: FlaskClient, store: JobStore) -> None:
    job = client.post("/jobs", json={"task": "echo", "delay": 30}).get_json()
    assert job["status"] == "queued"
    assert store.redis.llen(store.keys.queue) == 0
    assert store.redis.zscore(store.keys.delayed, job["id"]) is not None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "/"),
        ({"task": ""}, "/task"),
        ({"task": 5}, "/task"),
        ({"task": "echo", "params": []}, "/params"),
        ({"task": "echo", "params": "x"}, "/params"),
        ({"task": "echo", "extra": 1}, "/"),
        ({"task": "echo", "max_attempts": 0}, "/max_attempts"),
        ({"task": "echo", "max_attempts": 101}, "/max_attempts"),
        ({"task": "echo", "max_attempts": True}, "/max_attempts"),
        ({"task": "echo", "max_attempts": 2.5}, "/max_attempts"),
        ({"task": "echo", "max_attempts": "3"}, "/max_attempts"),
        ({"task": "echo", "timeout": 0}, "/timeout"),
        ({"task": "echo", "timeout": -1}, "/timeout"),
        ({"task": "echo", "timeout": 10**9}, "/timeout"),
        ({"task": "echo", "timeout": False}, "/timeout"),
        ({"task": "echo", "delay": -0.1}, "/delay"),
        ({"task": "echo", "delay": 10**9}, "/delay"),
        ({"task": "echo", "delay": None}, "/delay"),
        ({"task": "nope"}, "/task"),
        ({"task": "primes", "params": {}}, "/params"),
        ({"task": "primes", "params": {"limit": 1}}, "/params/limit"),
        ({"task": "primes", "params": {"limit": "10"}}, "/params/limit"),
        ({"task": "primes", "params": {"limit": True}}, "/params/limit"),
        ({"task": "primes", "params": {"limit": 10, "x": 1}}, "/params"),
        ({"task": "sleep", "params": {"seconds": -1}}, "/params/seconds"),
    ],
)
def test_invalid_submissions_are_422_with_a_path(client: FlaskClient, store: JobStore, body: Any, path: str) -> None:
    resp = client.post("/jobs", json=body)
    assert resp.status_code == 422, resp.get_json()
    assert resp.content_type == "application/problem+json"
    problem = resp.get_json(force=True)
    assert problem["type"] == "/problems/validation-error"
    assert path in [e["path"] for e in problem["errors"]], problem
    assert store.redis.llen(store.keys.queue) == 0  # nothing was queued


def test_top_level_json_that_is_not_an_object_is_422(client: FlaskClient) -> None:
    for body in (b"[]", b"3", b'"task"', b"null"):
        resp = client.post("/jobs", data=body, content_type="application/json")
        assert resp.status_code == 422
        assert _errors(resp)[0]["path"] == "/"


def test_type_errors_are_worded_in_json_terms(client: FlaskClient) -> None:
    resp = client.post("/jobs", json={"task": "echo", "max_attempts": True})
    assert _errors(resp) == [{"path": "/max_attempts", "message": "must be of type integer, not boolean"}]


def test_every_failing_param_is_listed(client: FlaskClient) -> None:
    resp = client.post("/jobs", json={"task": "primes", "params": {"limit": "x", "other": 1}})
    paths = sorted(e["path"] for e in _errors(resp))
    assert paths == ["/params", "/params/limit"]


@pytest.mark.parametrize("data", [b"{", b'{"task": }', b"\xff\xfe", b"", b"{'task': 'echo'}"])
def test_malformed_json_is_400(client: FlaskClient, data: bytes) -> None:
    resp = client.post("/jobs", data=data, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json(force=True)["type"] == "/problems/malformed-json"


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_wrong_content_type_is_415(client: FlaskClient, content_type: str | None) -> None:
    kwargs: dict[str, Any] = {"data": b'{"task": "echo"}'}
    if content_type:
        kwargs["content_type"] = content_type
    resp = client.post("/jobs", **kwargs)
    assert resp.status_code == 415
    assert resp.content_type == "application/problem+json"


def test_json_with_charset_and_vendor_json_types_are_accepted(client: FlaskClient) -> None:
    for ct in ("application/json; charset=utf-8", "application/vnd.api+json"):
        assert client.post("/jobs", data=b'{"task": "echo"}', content_type=ct).status_code == 202


def test_body_over_the_limit_is_413(settings: Settings, store: JobStore) -> None:
    store.publish_tasks(TASKS)
    app = make_app(settings.replace(max_body_bytes=1000), store)
    client = app.test_client()
    big = {"task": "echo", "params": {"blob": "x" * 2000}}
    resp = client.post("/jobs", json=big)
    assert resp.status_code == 413
    assert resp.get_json(force=True)["title"] == "Request Entity Too Large"
    assert client.post("/jobs", json={"task": "echo", "params": {"blob": "x" * 500}}).status_code == 202


def test_idempotency_key_repeat_returns_the_same_job(client: FlaskClient, store: JobStore) -> None:
    body = {"task": "sleep", "params": {"seconds": 3}}
    first = client.post("/jobs", json=body, headers={"Idempotency-Key": "order-17"})
    second = client.post("/jobs", json=body, headers={"Idempotency-Key": "order-17"})
    assert first.status_code == second.status_code == 202
    assert second.get_json()["id"] == first.get_json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert store.redis.llen(store.keys.queue) == 1
    other = client.post("/jobs", json=body, headers={"Idempotency-Key": "order-18"})
    assert other.get_json()["id"] != first.get_json()["id"]


def test_idempotency_key_with_a_different_body_is_422(client: FlaskClient) -> None:
    client.post("/jobs", json={"task": "sleep", "params": {"seconds": 3}}, headers={"Idempotency-Key": "k1"})
    resp = client.post("/jobs", json={"task": "sleep", "params": {"seconds": 4}}, headers={"Idempotency-Key": "k1"})
    assert resp.status_code == 422
    assert "Idempotency-Key" in resp.get_json(force=True)["detail"]


@pytest.mark.parametrize("key", ["", "a b", "x" * 201, "é"])
def test_bad_idempotency_key_is_400(client: FlaskClient, key: str) -> None:
    resp = client.post("/jobs", json={"task": "echo"}, headers={"Idempotency-Key": key})
    assert resp.status_code == 400
    assert _errors(resp)[0]["path"] == "/headers/Idempotency-Key"


def test_per_tenant_cap_is_429_with_retry_after(settings: Settings, store: JobStore) -> None:
    store.publish_tasks(TASKS)
    client = make_app(settings.replace(max_pending_per_tenant=2), store).test_client()
    for _ in range(2):
        assert client.post("/jobs", json={"task": "echo"}).status_code == 202
    resp = client.post("/jobs", json={"task": "echo"})
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) > 0
    problem = resp.get_json(force=True)
    assert (problem["scope"], problem["limit"]) == ("tenant", 2)
    assert store.redis.llen(store.keys.queue) == 2  # what was accepted is kept, the rest refused


def test_global_cap_is_429(settings: Settings, store: JobStore) -> None:
    store.publish_tasks(TASKS)
    client = make_app(settings.replace(max_pending=1), store).test_client()
    assert client.post("/jobs", json={"task": "echo"}).status_code == 202
    resp = client.post("/jobs", json={"task": "echo"})
    assert resp.status_code == 429
    assert resp.get_json(force=True)["scope"] == "global"


def test_submission_metrics_count_outcomes(client: FlaskClient) -> None:
    def value(task: str, outcome: str) -> float:
        text = client.get("/metrics").get_data(as_text=True)
        line = f'jobs_api_submissions_total{{outcome="{outcome}",task="{task}"}}'
        for row in text.splitlines():
            if row.startswith(line):
                return float(row.split()[-1])
        return 0.0

    before = (value("echo", "accepted"), value("_unknown", "unknown_task"))
    client.post("/jobs", json={"task": "echo"})
    client.post("/jobs", json={"task": "no-such-task"})
    assert value("echo", "accepted") == before[0] + 1
    assert value("_unknown", "unknown_task") == before[1] + 1


def test_unpublished_tasks_are_unknown(settings: Settings) -> None:
    # scale-to-zero: tasks come from Redis, so an empty catalogue means no task is known
    client = make_app(settings).test_client()
    assert client.post("/jobs", json={"task": "echo"}).status_code == 422
    redis.Redis.from_url(settings.redis_url).ping()


def test_submission_goes_to_the_queue_its_task_declares_with_its_priority(
    client: FlaskClient, store: JobStore, namespace: str
) -> None:
    from jobs_core.model import TaskInfo

    gpu = f"{namespace}-gpu"
    store.publish_tasks([TaskInfo("render", queue=gpu)])
    job = client.post("/jobs", json={"task": "render", "priority": 9}).get_json()
    assert (job["queue"], job["priority"]) == (gpu, 9)
    assert store.redis.lrange(f"hotqueue:{gpu}:p9", 0, -1) == [f'"{job["id"]}"'.encode()]
    plain = client.post("/jobs", json={"task": "echo"}).get_json()
    assert (plain["queue"], plain["priority"]) == (store.settings.queue, 5)
    tasks = {t["name"]: t for t in client.get("/tasks").get_json()["tasks"]}
    assert tasks["render"]["queue"] == gpu and tasks["render"]["live"] is False and tasks["render"]["workers"] == 0


@pytest.mark.parametrize("priority", [-1, 10, 2.5, "9", True, None])
def test_priority_out_of_range_or_not_an_integer_is_422(client: FlaskClient, store: JobStore, priority: Any) -> None:
    resp = client.post("/jobs", json={"task": "echo", "priority": priority})
    assert resp.status_code == 422 and _errors(resp)[0]["path"] == "/priority"
    assert store.counts()["queued"] == 0
