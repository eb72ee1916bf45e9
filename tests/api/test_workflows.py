"""``/workflows`` and ``depends_on`` over HTTP: atomic DAG submission, 422 naming cycles and unknown
references, node statuses as dependencies end, cascade, cancel of a whole workflow."""

from __future__ import annotations

import time
from typing import Any

import orjson
from flask.testing import FlaskClient
from jobs_core.store import JobStore

from api.conftest import Runner, make_app

DIAMOND = {"nodes": [
    {"name": "fetch", "task": "echo", "params": {"url": "x"}},
    {"name": "left", "task": "echo", "depends_on": ["fetch"]},
    {"name": "right", "task": "echo", "depends_on": [{"node": "fetch", "on_failure": "ignore"}]},
    {"name": "join", "task": "echo", "depends_on": ["left", "right"]},
]}


def snapshot(store: JobStore) -> dict[bytes, Any]:
    """Every key of the test's namespace with its content (the Redis is shared: never count the whole db):
    a hash's fields (a large hash's DUMP follows its dict order, which rehashing may change), else DUMP."""
    keys = sorted(store.redis.scan_iter(f"{store.keys.prefix}:*", count=1000))
    return {k: store.redis.hgetall(k) if store.redis.type(k) == b"hash" else store.redis.dump(k) or b""
            for k in keys}


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
    waiting = client.get("/jobs?status=waiting").get_json()["jobs"]
    assert waiting == []


def _delayed(store: JobStore, job_id: str) -> float | None:
    return store.redis.zscore(store.keys.for_queue(store.settings.queue).delayed, job_id)


def test_depends_on_with_a_delay(client: FlaskClient, runner: Runner, store: JobStore, submit: Any) -> None:
    """The delay counts from the submission: released before its run_at, the dependent goes to the delayed
    set (due at run_at); released after it, or with its dependency already done, it is queued as usual."""
    first = submit("echo")
    late = submit("echo", depends_on=[first["id"]], delay=3600)
    soon = submit("echo", depends_on=[first["id"]], delay=0.05)
    assert late["status"] == "waiting" and _delayed(store, late["id"]) is None
    run_at = int(store.redis.hget(store.keys.job(late["id"]), "run_at") or 0)
    time.sleep(0.1)  # soon's run_at has passed when it is released; late's has not
    runner.succeed(first["id"])
    assert client.get(f"/jobs/{late['id']}").get_json()["status"] == "queued"
    assert _delayed(store, late["id"]) == run_at  # due at its run_at, not before: no worker sees it
    queue = store.keys.for_queue(store.settings.queue)
    entries = [e for lst in queue.waiting_lists for e in store.redis.lrange(lst, 0, -1)]
    assert f'"{soon["id"]}"'.encode() in entries and f'"{late["id"]}"'.encode() not in entries
    runner.succeed(soon["id"])
    done_dep = submit("echo", depends_on=[first["id"]], delay=3600)  # its dependency is done already
    assert done_dep["status"] == "queued" and _delayed(store, done_dep["id"]) is not None
    assert client.delete(f"/jobs/{late['id']}").get_json()["status"] == "cancelled"
    assert _delayed(store, late["id"]) is None


def test_depends_on_with_an_idempotency_key(client: FlaskClient, store: JobStore, submit: Any) -> None:
    """A repeat of a depends_on submission with the same Idempotency-Key returns the same job (nothing new
    is created or waits twice); the same key with another body is a conflict."""
    first = submit("echo")
    body = {"task": "echo", "params": {"n": 1}, "depends_on": [first["id"]]}
    one = client.post("/jobs", json=body, headers={"Idempotency-Key": "dep-1"})
    again = client.post("/jobs", json=body, headers={"Idempotency-Key": "dep-1"})
    assert one.status_code == again.status_code == 202
    assert one.get_json()["id"] == again.get_json()["id"] and again.get_json()["status"] == "waiting"
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in one.headers
    other = client.post("/jobs", json={**body, "params": {"n": 2}}, headers={"Idempotency-Key": "dep-1"})
    assert other.status_code == 422  # as for POST /jobs: the key was used with another body
    assert [j["id"] for j in client.get("/jobs?status=waiting").get_json()["jobs"]] == [one.get_json()["id"]]
    dependents = store.redis.hget(store.keys.job(first["id"]), "dependents")
    assert dependents is not None and list(orjson.loads(dependents)) == [one.get_json()["id"]]
    plain = client.post("/jobs", json={"task": "echo"}, headers={"Idempotency-Key": "dep-1"})
    assert plain.status_code == 422  # one key space with plain POST /jobs


def test_pending_caps_apply_to_workflows_and_depends_on(client: FlaskClient, settings: Any, store: JobStore) -> None:
    """Backpressure as on POST /jobs: every node of a workflow counts (waiting ones too); 429 with nothing
    created when they do not fit, per tenant and per queue."""
    client = make_app(settings.replace(max_pending_per_tenant=3), store).test_client()  # tasks published by `client`
    chain = {"nodes": [{"name": "a", "task": "echo"}, {"name": "b", "task": "echo", "depends_on": ["a"]},
                       {"name": "c", "task": "echo", "depends_on": ["b"]}]}
    four = {"nodes": [*chain["nodes"], {"name": "d", "task": "echo", "depends_on": ["c"]}]}
    before = snapshot(store)
    resp = client.post("/workflows", json=four)
    assert resp.status_code == 429 and resp.headers["Retry-After"]
    assert resp.get_json()["type"].endswith("queue-full") or "pending" in resp.get_json()["detail"]
    assert snapshot(store) == before  # nothing created
    ok = client.post("/workflows", json=chain)
    assert ok.status_code == 201  # 3 nodes fit; only 'a' is pending now (b and c wait)
    assert client.post("/workflows", json=chain).status_code == 429  # 1 pending + 3 nodes > 3
    a = ok.get_json()["nodes"][0]["job_id"]
    assert client.post("/jobs", json={"task": "echo", "depends_on": [a]}).status_code == 202  # 1 + 1 fit
    queue_cap = make_app(settings.replace(max_pending=1), store).test_client()
    assert queue_cap.post("/workflows", json=chain).status_code == 429  # 1 queued in the queue + 3 > 1
    assert queue_cap.post("/jobs", json={"task": "echo", "depends_on": [a]}).status_code == 429  # 1 + 1 > 1


def test_workflow_with_an_idempotency_key(client: FlaskClient, store: JobStore) -> None:
    """POST /workflows repeated with the same Idempotency-Key (a retry after a lost answer) returns the first
    workflow, nothing created twice; another body under that key is 422."""
    one = client.post("/workflows", json=DIAMOND, headers={"Idempotency-Key": "wf-1"})
    assert one.status_code == 201 and "Idempotent-Replayed" not in one.headers
    before = snapshot(store)
    again = client.post("/workflows", json=DIAMOND, headers={"Idempotency-Key": "wf-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == one.get_json()["id"] and again.headers["Location"] == one.headers["Location"]
    assert [n["job_id"] for n in again.get_json()["nodes"]] == [n["job_id"] for n in one.get_json()["nodes"]]
    other = client.post("/workflows", json={"nodes": DIAMOND["nodes"][:1]}, headers={"Idempotency-Key": "wf-1"})
    assert other.status_code == 422
    assert snapshot(store) == before  # neither the repeat nor the conflict changed anything
    assert client.post("/jobs", json={"task": "echo"}, headers={"Idempotency-Key": "wf-1"}).status_code == 202
