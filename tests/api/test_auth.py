"""Bearer keys, 401s, and tenant isolation on every endpoint."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_api.auth import Authenticator, Principal
from jobs_core.config import ApiKey, Role, Settings, load_api_keys
from jobs_core.store import JobStore

from api.conftest import TASKS, Runner, make_app

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-fedcba9876543210"


@pytest.fixture
def authed(settings: Settings, store: JobStore) -> FlaskClient:
    store.publish_tasks(TASKS)
    keys = load_api_keys({"JOBS_API_KEYS": f"alice:{KEY_A},bob:{KEY_B}"})
    return make_app(settings.replace(api_keys=keys), store).test_client()


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


PROTECTED = [
    ("POST", "/jobs"),
    ("GET", "/jobs"),
    ("GET", "/jobs/00000000-0000-4000-8000-000000000000"),
    ("GET", "/jobs/00000000-0000-4000-8000-000000000000/result"),
    ("DELETE", "/jobs/00000000-0000-4000-8000-000000000000"),
    ("POST", "/jobs/00000000-0000-4000-8000-000000000000/retry"),
    ("GET", "/tasks"),
    ("GET", "/tasks/echo"),
]


@pytest.mark.parametrize(("method", "url"), PROTECTED)
@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", f"Basic {KEY_A}", f"Bearer {KEY_A}x", f"Bearer {KEY_A[:-1]}", "Bearer nope"],
)
def test_missing_or_wrong_key_is_401(authed: FlaskClient, method: str, url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    resp = authed.open(url, method=method, headers=headers, json={"task": "echo"} if method == "POST" else None)
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.content_type == "application/problem+json"
    assert KEY_A not in resp.get_data(as_text=True)


def test_scheme_is_case_insensitive(authed: FlaskClient) -> None:
    assert authed.get("/tasks", headers={"Authorization": f"bearer {KEY_A}"}).status_code == 200


@pytest.mark.parametrize("url", ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_ops_endpoints_need_no_key(authed: FlaskClient, url: str) -> None:
    assert authed.get(url).status_code == 200


def test_jobs_belong_to_their_tenant_on_every_endpoint(authed: FlaskClient, runner: Runner) -> None:
    job = authed.post("/jobs", json={"task": "echo"}, headers=_h(KEY_A)).get_json()
    jid = job["id"]
    # bob sees nothing of alice's job, whatever its state
    assert authed.get(f"/jobs/{jid}", headers=_h(KEY_B)).status_code == 404
    assert authed.get(f"/jobs/{jid}?wait=0.2", headers=_h(KEY_B)).status_code == 404
    assert authed.get(f"/jobs/{jid}/result", headers=_h(KEY_B)).status_code == 404
    assert authed.delete(f"/jobs/{jid}", headers=_h(KEY_B)).status_code == 404
    assert authed.get("/jobs", headers=_h(KEY_B)).get_json()["jobs"] == []
    assert authed.get("/jobs?status=queued", headers=_h(KEY_B)).get_json()["jobs"] == []
    runner.fail(jid)
    assert authed.post(f"/jobs/{jid}/retry", headers=_h(KEY_B)).status_code == 404
    assert authed.get(f"/jobs/{jid}", headers=_h(KEY_A)).get_json()["status"] == "failed"  # untouched by bob
    assert authed.post(f"/jobs/{jid}/retry", headers=_h(KEY_A)).status_code == 202
    runner.succeed(jid, {"secret": 1})
    assert authed.get(f"/jobs/{jid}/result", headers=_h(KEY_B)).status_code == 404
    assert authed.get(f"/jobs/{jid}/result", headers=_h(KEY_A)).get_json() == {"secret": 1}
    assert [j["id"] for j in authed.get("/jobs", headers=_h(KEY_A)).get_json()["jobs"]] == [jid]
    # the job is owned by alice in storage
    assert runner.store.get(jid).owner == "alice"


def test_idempotency_keys_are_per_tenant(authed: FlaskClient) -> None:
    body = {"task": "echo", "params": {"n": 1}}
    a = authed.post("/jobs", json=body, headers={**_h(KEY_A), "Idempotency-Key": "same"}).get_json()
    b = authed.post("/jobs", json=body, headers={**_h(KEY_B), "Idempotency-Key": "same"}).get_json()
    assert a["id"] != b["id"]
    # and a different body under bob's key does not collide with alice's
    other = authed.post("/jobs", json={"task": "echo"}, headers={**_h(KEY_B), "Idempotency-Key": "x"})
    assert other.status_code == 202


def test_per_tenant_cap_counts_each_tenant_separately(settings: Settings, store: JobStore) -> None:
    store.publish_tasks(TASKS)
    keys = load_api_keys({"JOBS_API_KEYS": f"alice:{KEY_A},bob:{KEY_B}"})
    client = make_app(settings.replace(api_keys=keys, max_pending_per_tenant=1), store).test_client()
    assert client.post("/jobs", json={"task": "echo"}, headers=_h(KEY_A)).status_code == 202
    assert client.post("/jobs", json={"task": "echo"}, headers=_h(KEY_A)).status_code == 429
    assert client.post("/jobs", json={"task": "echo"}, headers=_h(KEY_B)).status_code == 202


def test_auth_off_uses_tenant_default_and_warns(
    settings: Settings, store: JobStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jobs_api")
    store.publish_tasks(TASKS)
    client = make_app(settings, store).test_client()
    assert any("authentication is OFF" in r.getMessage() for r in caplog.records)
    job = client.post("/jobs", json={"task": "echo"}, headers=_h("anything")).get_json()
    assert store.get(job["id"]).owner == "default"


def test_keys_never_reach_the_logs(authed: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    authed.get("/tasks", headers=_h(KEY_A))
    authed.get("/tasks", headers=_h(KEY_A + "wrong"))
    assert KEY_A not in caplog.text


def test_authenticator_matches_every_key_to_its_tenant_and_role() -> None:
    roles = list(Role)
    keys = {f"k{i}-secret": ApiKey(f"t{i}", roles[i % 3]) for i in range(20)}
    auth = Authenticator(keys)
    for key, entry in keys.items():
        assert auth.principal_for(key) == Principal(entry.tenant, entry.role)
    assert auth.principal_for("k1-secre") is None
    assert auth.principal_for("") is None
    assert not Authenticator({}).enabled


def test_keys_file_is_read(tmp_path: Any, settings: Settings, store: JobStore) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# tenants\nalice:{KEY_A}\n")
    keys = load_api_keys({"JOBS_API_KEYS_FILE": str(path)})
    store.publish_tasks(TASKS)
    client = make_app(settings.replace(api_keys=keys), store).test_client()
    assert client.get("/tasks", headers=_h(KEY_A)).status_code == 200
    assert client.get("/tasks").status_code == 401
