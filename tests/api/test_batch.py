"""``POST /jobs/batch``: every job validated first (a 422 names each bad one by index and queues nothing),
then all queued atomically; Idempotency-Key for the batch; priorities; caps count the whole batch."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_api.openapi_batch import MAX_BATCH_JOBS
from jobs_core.config import Settings
from jobs_core.store import JobStore

from api.conftest import TASKS, make_app


def _nothing_queued(client: FlaskClient, store: JobStore) -> None:
    assert client.get("/jobs").get_json()["jobs"] == []
    assert store.counts()["queued"] == 0 and store.counts()["delayed"] == 0


def test_batch_queues_every_job_in_order(client: FlaskClient, store: JobStore, settings: Settings) -> None:
    items = [{"task": "echo", "params": {"n": i}} for i in range(5)]
    items += [{"task": "primes", "params": {"limit": 10}, "priority": 9, "max_attempts": 2, "timeout": 5},
              {"task": "sleep", "delay": 30}]
    resp = client.post("/jobs/batch", json={"jobs": items})
    assert resp.status_code == 202, resp.get_json()
    assert "Idempotent-Replayed" not in resp.headers
    jobs = resp.get_json()["jobs"]
    assert [j["task"] for j in jobs] == ["echo"] * 5 + ["primes", "sleep"]
    assert [j["params"] for j in jobs[:5]] == [{"n": i} for i in range(5)]
    assert jobs[5]["priority"] == 9 and jobs[5]["max_attempts"] == 2 and jobs[5]["timeout"] == 5
    assert jobs[6]["params"] == {"seconds": 1}  # the task's defaults applied, as for POST /jobs
    assert {j["status"] for j in jobs} == {"queued"} and {j["queue"] for j in jobs} == {settings.queue}
    assert [j["priority"] for j in jobs[:5]] == [5] * 5
    for job in jobs:
        assert client.get(f"/jobs/{job['id']}").get_json()["id"] == job["id"]
    counts = store.counts()
    assert (counts["queued"], counts["delayed"]) == (6, 1)


def test_invalid_items_are_named_by_index_and_nothing_is_queued(client: FlaskClient, store: JobStore) -> None:
    items: list[Any] = [{"task": "echo"} for _ in range(6)]
    items[1] = {"task": "nope"}
    items[3] = {"task": "primes", "params": {"limit": "many"}}
    items[4] = {"task": "echo", "priority": 10, "owner": "bob"}
    items[5] = "echo"
    resp = client.post("/jobs/batch", json={"jobs": items})
    assert resp.status_code == 422
    problem = resp.get_json()
    paths = [e["path"] for e in problem["errors"]]
    assert "/jobs/1/task" in paths and "/jobs/3/params/limit" in paths and "/jobs/4/priority" in paths
    assert "/jobs/4" in paths and "/jobs/5" in paths  # the unknown field and the item that is not an object
    assert not [p for p in paths if p.startswith(("/jobs/0", "/jobs/2"))]
    assert problem["invalid_items"] == [1, 3, 4, 5]
    assert "4 of 6 jobs are invalid (items 1, 3, 4, 5); nothing was queued" in problem["detail"]
    _nothing_queued(client, store)


def test_one_bad_job_among_a_thousand_queues_nothing(client: FlaskClient, store: JobStore) -> None:
    items = [{"task": "primes", "params": {"limit": 10 + i}} for i in range(MAX_BATCH_JOBS)]
    items[777]["params"]["limit"] = 1
    resp = client.post("/jobs/batch", json={"jobs": items})
    assert resp.status_code == 422
    assert [e["path"] for e in resp.get_json()["errors"]] == ["/jobs/777/params/limit"]
    _nothing_queued(client, store)
    items[777]["params"]["limit"] = 2
    resp = client.post("/jobs/batch", json={"jobs": items})
    assert resp.status_code == 202
    assert len(resp.get_json()["jobs"]) == MAX_BATCH_JOBS and store.counts()["queued"] == MAX_BATCH_JOBS


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"jobs": []}, "/jobs"),
        ({"jobs": [{"task": "echo"}] * (MAX_BATCH_JOBS + 1)}, "/jobs"),
        ({"jobs": {"task": "echo"}}, "/jobs"),
        ({}, "/"),
        ({"jobs": [{"task": "echo"}], "tenant": "bob"}, "/"),
        ([{"task": "echo"}], "/"),
        (None, "/"),  # the JSON document null
    ],
)
def test_bad_batch_shapes_are_422(client: FlaskClient, store: JobStore, body: Any, path: str) -> None:
    resp = client.post("/jobs/batch", data=json.dumps(body), content_type="application/json")
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["path"] == path
    _nothing_queued(client, store)


def test_params_too_deep_to_store_name_their_item(client: FlaskClient, store: JobStore) -> None:
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    resp = client.post("/jobs/batch", json={"jobs": [{"task": "echo"}, {"task": "echo", "params": {"a": deep}}]})
    assert resp.status_code == 422
    assert resp.get_json()["errors"][0]["path"].startswith("/jobs/1/params")
    _nothing_queued(client, store)


def test_params_too_deep_and_other_invalid_jobs_are_all_named_in_item_order(client: FlaskClient,
                                                                             store: JobStore) -> None:
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    jobs = [{"task": "echo", "params": {"a": deep}}, {"task": "echo"}, {"task": "nope"},
            {"task": "echo", "params": {"b": deep}}]
    for headers in ({}, {"Idempotency-Key": "deep-batch"}):  # the key's digest encodes the params too
        resp = client.post("/jobs/batch", json={"jobs": jobs}, headers=headers)
        body = resp.get_json()
        assert resp.status_code == 422 and body["invalid_items"] == [0, 2, 3], body
        assert [e["path"] for e in body["errors"]] == ["/jobs/0/params", "/jobs/2/task", "/jobs/3/params"]
        assert "3 of 4 jobs are invalid (items 0, 2, 3)" in body["detail"]
    resp = client.post("/jobs/batch", json={"jobs": [jobs[0], jobs[1]]}, headers={"Idempotency-Key": "deep-2"})
    assert resp.status_code == 422 and resp.get_json()["invalid_items"] == [0]
    _nothing_queued(client, store)


def test_idempotency_key_covers_the_batch(client: FlaskClient, store: JobStore) -> None:
    body = {"jobs": [{"task": "echo", "params": {"n": 1}}, {"task": "echo", "params": {"n": 2}}]}
    headers = {"Idempotency-Key": "import-2026-11-29"}
    first = client.post("/jobs/batch", json=body, headers=headers)
    again = client.post("/jobs/batch", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [j["id"] for j in again.get_json()["jobs"]] == [j["id"] for j in first.get_json()["jobs"]]
    other = client.post("/jobs/batch", json={"jobs": body["jobs"][:1]}, headers=headers)
    assert other.status_code == 422 and "Idempotency-Key" in other.get_json()["detail"]
    # a single submission with the same key is not the batch (no clash either way)
    assert client.post("/jobs", json={"task": "echo"}, headers=headers).status_code == 202
    assert store.counts()["queued"] == 3
    bad = client.post("/jobs/batch", json=body, headers={"Idempotency-Key": "a b"})
    assert bad.status_code == 400


def test_the_whole_batch_counts_against_the_pending_caps(settings: Settings, store: JobStore) -> None:
    store.publish_tasks(TASKS)
    client = make_app(settings.replace(max_pending_per_tenant=3), store).test_client()
    assert client.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 2}).status_code == 202
    resp = client.post("/jobs/batch", json={"jobs": [{"task": "echo"}] * 2})
    assert resp.status_code == 429 and resp.headers["Retry-After"]
    assert store.counts()["queued"] == 2  # all or nothing: not one of the two was queued
    assert client.post("/jobs/batch", json={"jobs": [{"task": "echo"}]}).status_code == 202


def test_priority_on_single_submissions(client: FlaskClient, submit: Any) -> None:
    assert submit("echo")["priority"] == 5
    assert submit("echo", priority=0)["priority"] == 0
    assert submit("echo", priority=9)["priority"] == 9
    for bad in (-1, 10, "9", 1.5, True, None):
        resp = client.post("/jobs", json={"task": "echo", "priority": bad})
        assert resp.status_code == 422 and resp.get_json()["errors"][0]["path"] == "/priority"


def test_higher_priority_is_claimed_first(client: FlaskClient, store: JobStore) -> None:
    items = [{"task": "echo", "params": {"n": n}, "priority": p} for n, p in enumerate([1, 5, 9, 5, 9, 0])]
    jobs = client.post("/jobs/batch", json={"jobs": items}).get_json()["jobs"]
    order = []
    while claimed := store.claim("w", 1):
        order.append(claimed[0].id)
    by_id = {j["id"]: j["params"]["n"] for j in jobs}
    assert [by_id[i] for i in order] == [2, 4, 1, 3, 0, 5]
