"""``/workflows`` and ``depends_on`` over HTTP: atomic DAG submission, 422 naming cycles and unknown
references, node statuses as dependencies end, cascade, cancel of a whole workflow."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from jobs_core.store import JobStore

from api.conftest import Runner

DIAMOND = {"nodes": [
    {"name": "fetch", "task": "echo", "params": {"url": "x"}},
    {"name": "left", "task": "echo", "depends_on": ["fetch"]},
    {"name": "right", "task": "echo", "depends_on": [{"node": "fetch", "on_failure": "ignore"}]},
    {"name": "join", "task": "echo", "depends_on": ["left", "right"]},
]}


def snapshot(store: JobStore) -> dict[bytes, bytes]:
    """Every key of the test's namespace with its DUMP (the Redis is shared: never count the whole db)."""
    keys = sorted(store.redis.scan_iter(f"{store.keys.prefix}:*", count=1000))
    return {k: store.redis.dump(k) or b"" for k in keys}


def statuses(body: dict[str, Any]) -> dict[str, str]:
    return {n["name"]: n["status"] for n in body["nodes"]}


def test_submit_follow_and_finish_a_diamond(client: FlaskClient, runner: Runner) -> None:
    resp = client.post("/workflows", json=DIAMOND)
    assert resp.status_code == 201, resp.get_json()
    wf = resp.get_json()
    assert resp.headers["Location"] == f"/workflows/{wf['id']}"
    assert wf["status"] == "running"
    assert statuses(wf) == {"fetch": "queued", "left": "waiting", "right": "waiting", "join": "waiting"}
    ids = {n["name"]: n["job_id"] for n in wf["nodes"]}
    assert client.get(f"/jobs/{ids['join']}").get_json()["status"] == "waiting"
    runner.succeed(ids["fetch"], {"page": 1})
    assert statuses(client.get(f"/workflows/{wf['id']}").get_json())["left"] == "queued"
    for name in ("left", "right", "join"):
        runner.succeed(ids[name])
    done = client.get(f"/workflows/{wf['id']}").get_json()
    assert done["status"] == "succeeded" and set(statuses(done).values()) == {"succeeded"}


def test_failure_cascades_and_cancel_the_whole_workflow(client: FlaskClient, runner: Runner) -> None:
    wf = client.post("/workflows", json=DIAMOND).get_json()
    ids = {n["name"]: n["job_id"] for n in wf["nodes"]}
    runner.fail(ids["fetch"])
    after = statuses(client.get(f"/workflows/{wf['id']}").get_json())
    assert after == {"fetch": "failed", "left": "cancelled", "right": "queued", "join": "cancelled"}
    job = client.get(f"/jobs/{ids['join']}").get_json()
    assert job["error"]["type"] == "DependencyFailed"
    other = client.post("/workflows", json=DIAMOND).get_json()
    cancelled = client.delete(f"/workflows/{other['id']}")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert set(statuses(cancelled.get_json()).values()) == {"cancelled"}


def test_refusals_name_the_problem_and_store_nothing(client: FlaskClient, store: JobStore) -> None:
    before = snapshot(store)

    def refused(body: Any) -> list[dict[str, str]]:
        resp = client.post("/workflows", json=body)
        assert resp.status_code == 422, resp.get_json()
        errors: list[dict[str, str]] = resp.get_json()["errors"]
        return errors

    cycle = refused({"nodes": [{"name": "a", "task": "echo", "depends_on": ["c"]},
                               {"name": "b", "task": "echo", "depends_on": ["a"]},
                               {"name": "c", "task": "echo", "depends_on": ["b"]}]})
    assert cycle == [{"path": "/nodes", "message": "dependency cycle among nodes 'a', 'b', 'c'"}]
    unknown = refused({"nodes": [{"name": "a", "task": "echo", "depends_on": ["nope"]}]})
    assert unknown[0]["path"] == "/nodes/0/depends_on/0" and "'nope'" in unknown[0]["message"]
    missing_job = refused({"nodes": [{"name": "a", "task": "echo",
                                      "depends_on": [{"job": "00000000-0000-4000-8000-000000000000"}]}]})
    assert missing_job[0]["path"] == "/nodes/0/depends_on/0"
    assert refused({"nodes": [{"name": "a", "task": "nope"}]})[0]["path"] == "/nodes/0/task"
    assert refused({"nodes": [{"name": "a", "task": "primes", "params": {"limit": "x"}}]})[0]["path"] == \
        "/nodes/0/params/limit"
    assert refused({"nodes": []})[0]["path"] == "/nodes"
    assert refused({"nodes": [{"name": "a", "task": "echo"}, {"name": "a", "task": "echo"}]})[0]["path"] == \
        "/nodes/1/name"
    assert snapshot(store) == before
    assert client.get("/workflows/nope").status_code == 404
    assert client.delete("/workflows/00000000-0000-4000-8000-000000000000").status_code == 404


def test_depends_on_on_post_jobs(client: FlaskClient, runner: Runner, submit: Any) -> None:
    first = submit("echo", params={"a": 1})
    second = submit("echo", depends_on=[first["id"]])
    assert second["status"] == "waiting"
    third = submit("echo", depends_on=[{"job": first["id"], "on_failure": "ignore"}])
    runner.succeed(first["id"])
    assert client.get(f"/jobs/{second['id']}").get_json()["status"] == "queued"
    assert client.get(f"/jobs/{third['id']}").get_json()["status"] == "queued"
    resp = client.post("/jobs", json={"task": "echo", "depends_on": ["00000000-0000-4000-8000-000000000000"]})
    assert resp.status_code == 422 and resp.get_json()["errors"][0]["path"] == "/depends_on/0"
    resp = client.post("/jobs", json={"task": "echo", "depends_on": [first["id"]], "delay": 5})
    assert resp.status_code == 422 and resp.get_json()["errors"][0]["path"] == "/delay"
    resp = client.post("/jobs", json={"task": "echo", "depends_on": [first["id"]]}, headers={"Idempotency-Key": "k"})
    assert resp.status_code == 422
    waiting = client.get("/jobs?status=waiting").get_json()["jobs"]
    assert waiting == []
