"""Roles of API keys (viewer < operator < admin) on every protected endpoint: 403 problem+json for a role
too small, nothing changed by a refused request, 404 for another tenant's job unless the caller is admin."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from flask import Blueprint, Flask
from flask.testing import FlaskClient
from jobs_api.auth import protect, required_role
from jobs_core.config import Role, Settings, load_api_keys
from jobs_core.store import JobStore

from api.conftest import TASKS, Runner, make_app

VIEWER = "alice-viewer-0123456789"
OPERATOR = "alice-operator-0123456789"
ADMIN = "ops-admin-0123456789"
BOB = "bob-operator-0123456789"
KEYS = f"alice:{VIEWER}:viewer,alice:{OPERATOR},ops:{ADMIN}:admin,bob:{BOB}:operator"
ROLE_KEYS = {Role.VIEWER: VIEWER, Role.OPERATOR: OPERATOR, Role.ADMIN: ADMIN}
#: Endpoints that never need a key.
OPS_RULES = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/init.js", "/docs/assets/<name>"}


@dataclass(frozen=True)
class Endpoint:
    """One protected operation, the least role it needs, and a request that exercises it."""

    method: str
    rule: str
    role: Role
    url: str  # {job} is replaced by a job of alice's, {queue} by the test's queue
    body: Any = None


ENDPOINTS = [
    Endpoint("POST", "/jobs", Role.OPERATOR, "/jobs", {"task": "echo"}),
    Endpoint("POST", "/jobs/batch", Role.OPERATOR, "/jobs/batch", {"jobs": [{"task": "echo"}, {"task": "echo"}]}),
    Endpoint("GET", "/jobs", Role.VIEWER, "/jobs"),
    Endpoint("GET", "/jobs/<job_id>", Role.VIEWER, "/jobs/{job}"),
    Endpoint("GET", "/jobs/<job_id>/result", Role.VIEWER, "/jobs/{job}/result"),
    Endpoint("DELETE", "/jobs/<job_id>", Role.OPERATOR, "/jobs/{job}"),
    Endpoint("POST", "/jobs/<job_id>/retry", Role.OPERATOR, "/jobs/{job}/retry"),
    Endpoint("GET", "/tasks", Role.VIEWER, "/tasks"),
    Endpoint("GET", "/tasks/<name>", Role.VIEWER, "/tasks/echo"),
    Endpoint("GET", "/events", Role.VIEWER, "/events?max_seconds=0"),
    Endpoint("GET", "/queues", Role.VIEWER, "/queues"),
    Endpoint("GET", "/queues/<name>", Role.VIEWER, "/queues/{queue}"),
    Endpoint("POST", "/queues/<name>/pause", Role.ADMIN, "/queues/{queue}/pause"),
    Endpoint("POST", "/queues/<name>/resume", Role.ADMIN, "/queues/{queue}/resume"),
    Endpoint("PUT", "/queues/<name>/cap", Role.ADMIN, "/queues/{queue}/cap", {"cap": 3}),
    Endpoint("PUT", "/schedules/<name>", Role.OPERATOR, "/schedules/s", {"task": "echo", "cron": "0 * * * *"}),
    Endpoint("GET", "/schedules", Role.VIEWER, "/schedules"),
    Endpoint("GET", "/schedules/<name>", Role.VIEWER, "/schedules/s"),
    Endpoint("DELETE", "/schedules/<name>", Role.OPERATOR, "/schedules/s"),
    Endpoint("POST", "/schedules/<name>/pause", Role.OPERATOR, "/schedules/s/pause"),
    Endpoint("POST", "/schedules/<name>/resume", Role.OPERATOR, "/schedules/s/resume"),
    Endpoint("POST", "/workflows", Role.OPERATOR, "/workflows", {"nodes": [{"name": "a", "task": "echo"}]}),
    Endpoint("GET", "/workflows/<workflow_id>", Role.VIEWER, "/workflows/00000000-0000-4000-8000-000000000000"),
    Endpoint("DELETE", "/workflows/<workflow_id>", Role.OPERATOR, "/workflows/00000000-0000-4000-8000-000000000000"),
    Endpoint("POST", "/webhooks/secret/rotate", Role.ADMIN, "/webhooks/secret/rotate"),
    Endpoint("PUT", "/webhooks/subscription", Role.OPERATOR, "/webhooks/subscription",
             {"url": "https://hooks.example.com/jobs"}),
    Endpoint("GET", "/webhooks/subscription", Role.VIEWER, "/webhooks/subscription"),
    Endpoint("DELETE", "/webhooks/subscription", Role.OPERATOR, "/webhooks/subscription"),
    Endpoint("GET", "/audit", Role.VIEWER, "/audit"),
]


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def roles_app(settings: Settings, store: JobStore) -> Flask:
    store.publish_tasks(TASKS)
    return make_app(settings.replace(api_keys=load_api_keys({"JOBS_API_KEYS": KEYS})), store)


@pytest.fixture
def authed(roles_app: Flask) -> FlaskClient:
    return roles_app.test_client()


def _alice_job(client: FlaskClient) -> str:
    resp = client.post("/jobs", json={"task": "echo"}, headers=_h(OPERATOR))
    assert resp.status_code == 202
    job_id: str = resp.get_json()["id"]
    return job_id


def _stored(store: JobStore, queue: str) -> tuple[Any, ...]:
    """What a request could change: job counts, and the queue's pause, cap and waiting jobs."""
    stats = store.queue_stats(queue)
    return store.counts(), stats.paused, stats.cap, stats.waiting_by_priority


def test_every_protected_route_is_in_the_role_table(roles_app: Flask) -> None:
    routes = {
        (method, rule.rule)
        for rule in roles_app.url_map.iter_rules()
        # the console (/ui) checks the same roles on its own session login: tests/console covers it
        if rule.rule not in OPS_RULES and rule.endpoint != "static" and not rule.rule.startswith("/ui")
        and not rule.rule.startswith("/ui")  # the console's pages: tests/console checks their roles
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert routes == {(e.method, e.rule) for e in ENDPOINTS}
    with roles_app.test_request_context():
        for e in ENDPOINTS:
            endpoint = next(r.endpoint for r in roles_app.url_map.iter_rules() if r.rule == e.rule
                            and e.method in (r.methods or set()))
            assert required_role(endpoint) is e.role, e


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.rule}")
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_role_on_each_endpoint(authed: FlaskClient, store: JobStore, settings: Settings, endpoint: Endpoint,
                                    role: Role) -> None:
    job_id = _alice_job(authed)
    before = _stored(store, settings.queue)
    resp = authed.open(endpoint.url.format(job=job_id, queue=settings.queue), method=endpoint.method,
                       json=endpoint.body, headers=_h(ROLE_KEYS[role]))
    if role.allows(endpoint.role):
        assert resp.status_code not in (401, 403), resp.get_json()
        return
    assert resp.status_code == 403
    assert resp.content_type == "application/problem+json"
    problem = resp.get_json()
    assert problem["type"] == "/problems/forbidden"
    assert f"needs the {endpoint.role} role" in problem["detail"] and f"has the {role} role" in problem["detail"]
    assert ROLE_KEYS[role] not in resp.get_data(as_text=True)
    # a refused request changed nothing (no job, no pause, no cap)
    assert _stored(store, settings.queue) == before
    assert store.get(job_id).status.value == "queued"


def test_viewer_reads_its_tenant_but_changes_nothing(authed: FlaskClient, runner: Runner) -> None:
    job_id = _alice_job(authed)
    runner.succeed(job_id, {"n": 1})
    assert authed.get(f"/jobs/{job_id}", headers=_h(VIEWER)).get_json()["status"] == "succeeded"
    assert authed.get(f"/jobs/{job_id}/result", headers=_h(VIEWER)).get_json() == {"n": 1}
    assert [j["id"] for j in authed.get("/jobs", headers=_h(VIEWER)).get_json()["jobs"]] == [job_id]
    assert authed.post("/jobs", json={"task": "echo"}, headers=_h(VIEWER)).status_code == 403
    assert [j["id"] for j in authed.get("/jobs", headers=_h(VIEWER)).get_json()["jobs"]] == [job_id]


def test_another_tenants_job_is_404_unless_admin(authed: FlaskClient, runner: Runner) -> None:
    job_id = _alice_job(authed)
    assert authed.get(f"/jobs/{job_id}", headers=_h(BOB)).status_code == 404
    assert authed.get(f"/jobs/{job_id}/result", headers=_h(BOB)).status_code == 404
    assert authed.delete(f"/jobs/{job_id}", headers=_h(BOB)).status_code == 404
    assert authed.post(f"/jobs/{job_id}/retry", headers=_h(BOB)).status_code == 404
    # the admin (of another tenant) reads it, with its tenant, and may act on it
    job = authed.get(f"/jobs/{job_id}", headers=_h(ADMIN)).get_json()
    assert job["tenant"] == "alice" and job["status"] == "queued"
    assert authed.get(f"/jobs/{job_id}?wait=0.1", headers=_h(ADMIN)).status_code == 200
    assert authed.get(f"/jobs/{job_id}/result", headers=_h(ADMIN)).status_code == 409
    assert authed.delete(f"/jobs/{job_id}", headers=_h(ADMIN)).get_json()["status"] == "cancelled"
    assert authed.post(f"/jobs/{job_id}/retry", headers=_h(ADMIN)).get_json()["status"] == "queued"
    runner.succeed(job_id, {"n": 2})
    assert authed.get(f"/jobs/{job_id}/result", headers=_h(ADMIN)).get_json() == {"n": 2}
    # what the admin submits belongs to the admin's tenant
    own = authed.post("/jobs", json={"task": "echo"}, headers=_h(ADMIN)).get_json()
    assert own["tenant"] == "ops"
    assert authed.get(f"/jobs/{own['id']}", headers=_h(OPERATOR)).status_code == 404


def test_listing_other_tenants_needs_admin(authed: FlaskClient) -> None:
    alice = _alice_job(authed)
    bob = authed.post("/jobs", json={"task": "echo"}, headers=_h(BOB)).get_json()["id"]

    def ids(key: str, query: str = "") -> Any:
        resp = authed.get(f"/jobs{query}", headers=_h(key))
        return [j["id"] for j in resp.get_json()["jobs"]] if resp.status_code == 200 else resp.status_code

    assert ids(ADMIN) == []  # by default an admin lists its own tenant, like everyone
    assert ids(ADMIN, "?tenant=alice") == [alice]
    assert ids(ADMIN, "?tenant=bob&status=queued") == [bob]
    assert ids(ADMIN, "?tenant=*") == [bob, alice]
    assert ids(ADMIN, "?tenant=nobody") == []
    for key in (VIEWER, OPERATOR):
        assert ids(key, "?tenant=alice") == [alice]  # its own tenant, named
        assert ids(key, "?tenant=bob") == 403
        assert ids(key, "?tenant=*") == 403
    assert ids(BOB, "?tenant=alice") == 403
    bad = authed.get("/jobs?tenant=a:b", headers=_h(ADMIN))
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["path"] == "/query/tenant"


def test_auth_off_is_admin_of_default(settings: Settings, store: JobStore) -> None:
    store.publish_tasks(TASKS)
    client = make_app(settings, store).test_client()
    job = client.post("/jobs", json={"task": "echo"}).get_json()
    assert job["tenant"] == "default"
    assert [j["id"] for j in client.get("/jobs?tenant=*").get_json()["jobs"]] == [job["id"]]


def test_a_view_without_a_declared_role_is_refused_to_everyone(settings: Settings, store: JobStore) -> None:
    app = make_app(settings.replace(api_keys=load_api_keys({"JOBS_API_KEYS": KEYS})), store)
    bp = Blueprint("undeclared", __name__)
    protect(bp)
    bp.add_url_rule("/undeclared", "undeclared", lambda: "secret")
    app.register_blueprint(bp)
    client = app.test_client()
    assert client.get("/undeclared").status_code == 401
    resp = client.get("/undeclared", headers=_h(ADMIN))
    assert resp.status_code == 403 and b"secret" not in resp.get_data()
