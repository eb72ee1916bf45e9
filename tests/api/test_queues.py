"""``/queues``: statistics of every queue, pause / resume and the concurrency cap, through the real store."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_core.config import Settings
from jobs_core.model import TaskInfo
from jobs_core.store import JobStore

from api.conftest import TASKS


@pytest.fixture
def gpu(settings: Settings, store: JobStore) -> str:
    """A second queue (named after the test's namespace, so its keys are cleaned up) with a task routed to it."""
    queue = f"{settings.queue}-gpu"
    store.publish_tasks([TaskInfo("render", "Render a frame.", {"type": "object"}, queue=queue)])
    return queue


def _stats(client: FlaskClient, queue: str) -> dict[str, Any]:
    resp = client.get(f"/queues/{queue}")
    assert resp.status_code == 200, resp.get_json()
    body: dict[str, Any] = resp.get_json()
    return body


def test_list_shows_every_known_queue(client: FlaskClient, settings: Settings, gpu: str) -> None:
    resp = client.get("/queues")
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    names = [q["name"] for q in resp.get_json()["queues"]]
    assert settings.queue in names and gpu in names
    assert names == sorted(names)


def test_stats_count_waiting_jobs_by_priority(client: FlaskClient, submit: Any, settings: Settings, gpu: str) -> None:
    empty = _stats(client, gpu)
    assert empty["waiting"] == 0 and empty["oldest_waiting_age_seconds"] is None
    assert empty["paused"] is False and empty["cap"] is None and empty["running"] == 0
    for priority in (9, 9, 0):
        job = submit("render", priority=priority)
        assert job["queue"] == gpu and job["priority"] == priority  # routed by its task, never named by the client
    submit("render")
    submit("render", delay=60)
    stats = _stats(client, gpu)
    assert stats["waiting_by_priority"]["9"] == 2 and stats["waiting_by_priority"]["0"] == 1
    assert stats["waiting_by_priority"]["5"] == 1 and stats["waiting"] == 4 and stats["delayed"] == 1
    assert stats["oldest_waiting_age_seconds"] is not None and stats["oldest_waiting_age_seconds"] >= 0
    assert _stats(client, settings.queue)["waiting"] == 0  # the other queue is untouched


def test_pause_and_resume(client: FlaskClient, submit: Any, store: JobStore, gpu: str) -> None:
    job = submit("render")
    resp = client.post(f"/queues/{gpu}/pause")
    assert resp.status_code == 200 and resp.get_json()["paused"] is True
    assert client.post(f"/queues/{gpu}/pause").get_json()["paused"] is True  # idempotent
    later = submit("render")  # a paused queue accepts submissions
    stats = _stats(client, gpu)
    assert stats["paused"] is True and stats["waiting"] == 2
    # nothing a worker (or KEDA) reads shows the paused jobs
    assert all(store.redis.llen(key) == 0 for key in store.keys.for_queue(gpu).waiting_lists)
    resp = client.post(f"/queues/{gpu}/resume")
    assert resp.status_code == 200 and resp.get_json()["paused"] is False
    assert client.post(f"/queues/{gpu}/resume").get_json()["paused"] is False
    waiting = [e for key in store.keys.for_queue(gpu).waiting_lists for e in store.redis.lrange(key, 0, -1)]
    assert sorted(w.decode().strip('"') for w in waiting) == sorted([job["id"], later["id"]])


@pytest.mark.parametrize("cap", [1, 3, 100_000])
def test_set_and_remove_the_cap(client: FlaskClient, gpu: str, cap: int) -> None:
    resp = client.put(f"/queues/{gpu}/cap", json={"cap": cap})
    assert resp.status_code == 200 and resp.get_json()["cap"] == cap
    assert _stats(client, gpu)["cap"] == cap
    resp = client.put(f"/queues/{gpu}/cap", json={"cap": None})
    assert resp.status_code == 200 and resp.get_json()["cap"] is None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"cap": 0}, "/cap"),
        ({"cap": -1}, "/cap"),
        ({"cap": 100_001}, "/cap"),
        ({"cap": "2"}, "/cap"),
        ({"cap": 1.5}, "/cap"),
        ({"cap": True}, "/cap"),
        ({}, "/"),
        ({"cap": 2, "queue": "x"}, "/"),
        ([2], "/"),
        (None, "/"),  # the JSON document null
    ],
)
def test_bad_caps_are_422_and_change_nothing(client: FlaskClient, gpu: str, body: Any, path: str) -> None:
    client.put(f"/queues/{gpu}/cap", json={"cap": 7})
    resp = client.put(f"/queues/{gpu}/cap", data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["path"] == path
    assert _stats(client, gpu)["cap"] == 7


def test_cap_body_must_be_json(client: FlaskClient, gpu: str) -> None:
    assert client.put(f"/queues/{gpu}/cap", data="cap=2", content_type="text/plain").status_code == 415
    assert client.put(f"/queues/{gpu}/cap", data="{", content_type="application/json").status_code == 400


@pytest.mark.parametrize("name", ["nope", "a:b", "*", "x" * 65, "%00", "..", "hotqueue:jobs"])
@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("PUT", "/cap")]
)
def test_unknown_queues_are_404_and_never_created(
    client: FlaskClient, store: JobStore, name: str, method: str, suffix: str
) -> None:
    before = store.queue_names()
    resp = client.open(f"/queues/{name}{suffix}", method=method, json={"cap": 1} if method == "PUT" else None)
    assert resp.status_code == 404
    assert resp.content_type == "application/problem+json"
    assert store.queue_names() == before


def test_a_queue_named_only_by_a_retired_task_stays_listed(client: FlaskClient, store: JobStore, gpu: str) -> None:
    # a queue once paused keeps its controls: it must stay visible (and resumable) to operators
    client.post(f"/queues/{gpu}/pause")
    store.retire_task("render")
    assert gpu in [q["name"] for q in client.get("/queues").get_json()["queues"]]
    assert client.post(f"/queues/{gpu}/resume").get_json()["paused"] is False


def test_tasks_are_published_with_their_queue(client: FlaskClient, settings: Settings, gpu: str) -> None:
    tasks = {t["name"]: t for t in client.get("/tasks").get_json()["tasks"]}
    assert tasks["render"]["queue"] == gpu
    assert {tasks[t.name]["queue"] for t in TASKS} == {settings.queue}


def test_queue_stats_reveal_no_job_or_tenant(client: FlaskClient, submit: Any, gpu: str) -> None:
    job = submit("render", params={"secret": "s3cr3t"})
    text = client.get(f"/queues/{gpu}").get_data(as_text=True) + client.get("/queues").get_data(as_text=True)
    assert job["id"] not in text and "s3cr3t" not in text and "default" not in text


def test_queue_and_task_show_run_time_percentiles(client: FlaskClient, store: JobStore, gpu: str) -> None:
    """GET /queues/{name} (every task, and each) and GET /tasks/{name} carry p50/p95/p99 of the last hour
    and day from the workers' histograms (the response schema is checked by the contract)."""
    empty = _stats(client, gpu)["run_time"]
    assert empty["hour"] == {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None} and empty["tasks"] == {}
    worker = JobStore.from_settings(store.settings.replace(queues=(gpu,)))
    for _ in range(4):
        store.enqueue("render", {}, queue=gpu)
    for claimed in worker.claim("w", 4):
        worker.finish("w", claimed.id, claimed.attempt, "succeeded")
    run_time = _stats(client, gpu)["run_time"]
    assert run_time["hour"]["count"] == run_time["day"]["count"] == 4 and run_time["hour"]["p50_ms"] is not None
    assert run_time["tasks"]["render"]["hour"] == run_time["hour"]
    task = client.get("/tasks/render")
    assert task.status_code == 200 and task.get_json()["run_time"] == {"hour": run_time["hour"], "day": run_time["day"]}
