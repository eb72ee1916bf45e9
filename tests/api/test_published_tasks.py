"""Whatever a worker published in the task catalogue, the API never answers 500 (issue 9, defect 3).

The entries are written straight to Redis, as an old or foreign worker could have published them.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient
from jobs_core.store import JobStore

BROKEN: dict[str, Any] = {
    "bad_minimum": {"name": "bad_minimum", "params_schema": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": "zero"}}}},
    "bad_pattern": {"name": "bad_pattern", "params_schema": {
        "type": "object", "properties": {"s": {"type": "string", "pattern": "(["}}}},
    "bad_ref": {"name": "bad_ref", "params_schema": {"$ref": "#/$defs/missing"}},
    "schema_not_object": {"name": "schema_not_object", "params_schema": "a string"},
    "defaults_not_object": {"name": "defaults_not_object", "defaults": [1, 2]},
    "bad_attempts": {"name": "bad_attempts", "max_attempts": "three"},
    "not_json": b"{not json",
    "not_an_object": [1, 2, 3],
    "wrong_name": {"name": "echo"},
}


@pytest.fixture
def broken(store: JobStore) -> dict[str, Any]:
    mapping = {name: v if isinstance(v, bytes) else orjson.dumps(v) for name, v in BROKEN.items()}
    store.redis.hset(store.keys.tasks, mapping=mapping)  # type: ignore[arg-type]
    return BROKEN


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_submitting_to_a_broken_task_is_503_naming_it(client: FlaskClient, broken: dict[str, Any],
                                                      name: str) -> None:
    resp = client.post("/jobs", json={"task": name, "params": {"n": 1, "s": "x"}})
    assert resp.status_code == 503, resp.get_json()
    problem = resp.get_json()
    assert resp.content_type == "application/problem+json"
    assert problem["type"] == "/problems/task-unavailable"
    assert problem["detail"].startswith(f"task {name!r} cannot take jobs: ")
    assert resp.headers["Retry-After"]


def test_the_catalogue_still_lists_every_task_with_its_problem(client: FlaskClient,
                                                                broken: dict[str, Any]) -> None:
    resp = client.get("/tasks")
    assert resp.status_code == 200
    tasks = {t["name"]: t for t in resp.get_json()["tasks"]}
    assert set(broken) | {"echo", "sleep", "primes"} <= set(tasks)
    for name in broken:
        assert tasks[name]["problem"], name
    assert "problem" not in tasks["echo"] and "problem" not in tasks["sleep"]
    assert "minimum" in tasks["bad_minimum"]["problem"] or "zero" in tasks["bad_minimum"]["problem"]
    for name in broken:
        one = client.get(f"/tasks/{name}")
        assert one.status_code == 200 and one.get_json()["problem"], name
    # healthy tasks still take jobs
    assert client.post("/jobs", json={"task": "sleep", "params": {"seconds": 1}}).status_code == 202


@pytest.fixture
def remote_schema_server() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on loopback that records the paths requested from it."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"type": "object"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()


def test_a_remote_ref_in_a_published_schema_is_never_fetched(
    client: FlaskClient, store: JobStore, remote_schema_server: tuple[str, list[str]]
) -> None:
    url, seen = remote_schema_server
    entry = {"name": "remote", "params_schema": {"$ref": f"{url}/schema.json"}}
    store.redis.hset(store.keys.tasks, "remote", orjson.dumps(entry))
    resp = client.post("/jobs", json={"task": "remote", "params": {}})
    assert resp.status_code == 503, resp.get_json()
    assert "remote" in resp.get_json()["detail"]
    assert seen == []  # no request left the API (SSRF)


@pytest.mark.parametrize("name", ["bad_minimum", "not_json"])
def test_scheduling_a_broken_task_is_503_naming_it(client: FlaskClient, broken: dict[str, Any], name: str) -> None:
    resp = client.put("/schedules/nightly", json={"task": name, "cron": "0 * * * *", "params": {"n": 1}})
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json()["detail"].startswith(f"task {name!r} cannot take jobs: ")


def test_a_batch_with_a_broken_task_is_503_and_queues_nothing(client: FlaskClient, store: JobStore,
                                                              broken: dict[str, Any]) -> None:
    items = [{"task": "echo", "params": {}}, {"task": "bad_minimum", "params": {"n": 1}}]
    resp = client.post("/jobs/batch", json={"jobs": items})
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json()["detail"].startswith("task 'bad_minimum' cannot take jobs: ")
    assert client.get("/jobs").get_json()["jobs"] == []


def test_the_console_lists_broken_tasks_without_a_form(client: FlaskClient, store: JobStore,
                                                       broken: dict[str, Any]) -> None:
    odd = {"name": "enum_not_a_list", "params_schema": {"type": "object", "properties": {"n": {"enum": 5}}}}
    store.redis.hset(store.keys.tasks, "enum_not_a_list", orjson.dumps(odd))
    resp = client.get("/ui/tasks")
    assert resp.status_code == 200
    page = resp.get_data(as_text=True)
    assert page.count("Cannot take jobs:") == len(broken) + 1
