"""``/schedules``: define, read, list, pause/resume, delete; validation; the ticker fires them."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient
from jobs_core.store import JobStore
from jobs_core.ticker import tick_once

DAILY = {"task": "echo", "params": {"report": "daily"}, "cron": "0 6 * * *", "timezone": "Europe/Paris"}


def test_create_get_list_replace_delete(client: FlaskClient) -> None:
    resp = client.put("/schedules/daily", json=DAILY)
    assert resp.status_code == 201 and resp.headers["Location"] == "/schedules/daily"
    body = resp.get_json()
    assert body["name"] == "daily" and body["cron"] == "0 6 * * *" and body["catchup"] == "one"
    assert body["overlap"] == "allow" and body["paused"] is False and body["last_tick"] is None
    assert len(body["next_runs"]) == 5
    assert all(r.endswith(("05:00:00.000Z", "04:00:00.000Z")) for r in body["next_runs"])  # 06:00 Paris
    assert client.put("/schedules/daily", json=DAILY).status_code == 200
    assert client.get("/schedules/daily").get_json()["updated_at"] == body["updated_at"]  # unchanged: untouched
    changed = client.put("/schedules/daily", json={**DAILY, "cron": "30 6 * * *", "overlap": "skip"})
    assert changed.status_code == 200 and changed.get_json()["overlap"] == "skip"
    listed = client.get("/schedules").get_json()["schedules"]
    assert [s["name"] for s in listed] == ["daily"] and listed[0]["cron"] == "30 6 * * *"
    assert client.delete("/schedules/daily").status_code == 204
    assert client.get("/schedules/daily").status_code == 404
    assert client.delete("/schedules/daily").status_code == 404


def test_pause_and_resume(client: FlaskClient) -> None:
    client.put("/schedules/s", json=DAILY)
    paused = client.post("/schedules/s/pause").get_json()
    assert paused["paused"] is True and paused["next_runs"] == []
    resumed = client.post("/schedules/s/resume").get_json()
    assert resumed["paused"] is False and len(resumed["next_runs"]) == 5
    assert client.post("/schedules/nope/pause").status_code == 404


def bad(client: FlaskClient, body: Any, name: str = "s") -> list[str]:
    resp = client.put(f"/schedules/{name}", json=body)
    assert resp.status_code == 422, resp.get_json()
    assert resp.content_type == "application/problem+json"
    return [e["path"] for e in resp.get_json()["errors"]]


def test_validation_names_every_bad_field(client: FlaskClient) -> None:
    assert bad(client, {**DAILY, "cron": "61 * * * *"}) == ["/cron"]
    assert bad(client, {**DAILY, "timezone": "Mars/Olympus"}) == ["/timezone"]
    assert bad(client, {**DAILY, "task": "nope"}) == ["/task"]
    assert bad(client, {"task": "primes", "cron": "* * * * *", "params": {"limit": "x"}}) == ["/params/limit"]
    assert bad(client, {**DAILY, "catchup": "most", "overlap": "sometimes", "priority": 10}) == [
        "/catchup", "/overlap", "/priority"]
    assert bad(client, {"cron": "* * * * *", "extra": 1}) == ["/", "/"]  # task missing, extra not allowed
    assert bad(client, ["not", "an", "object"]) == ["/"]
    resp = client.put("/schedules/bad:name", json=DAILY)
    assert resp.status_code == 400 and resp.get_json()["errors"][0]["path"] == "/path/name"
    assert client.put("/schedules/s", data="{", content_type="application/json").status_code == 400
    assert client.get("/schedules").get_json()["schedules"] == []


def test_tenant_schedule_cap_is_409(store: JobStore, settings: Any) -> None:
    from api.conftest import TASKS, make_app

    store.publish_tasks(TASKS)
    client = make_app(settings.replace(max_schedules_per_tenant=1), store).test_client()
    assert client.put("/schedules/a", json=DAILY).status_code == 201
    resp = client.put("/schedules/b", json=DAILY)
    assert resp.status_code == 409 and resp.get_json()["limit"] == 1


def test_ticker_fires_a_schedule_and_it_shows_its_last_tick(client: FlaskClient, store: JobStore) -> None:
    client.put("/schedules/fast", json={"task": "echo", "cron": "* * * * * *", "params": {"n": 1}})
    deadline = time.monotonic() + 5
    fired: list[str] = []
    while not fired and time.monotonic() < deadline:
        fired = tick_once(store, 1000)
        time.sleep(0.1)
    assert len(fired) == 1
    body = client.get("/schedules/fast").get_json()
    assert body["last_job"] == fired[0] and body["fired"] == 1 and body["last_tick"] is not None
    assert body["links"]["last_job"] == f"/jobs/{fired[0]}"
    job = client.get(f"/jobs/{fired[0]}").get_json()
    assert job["task"] == "echo" and job["params"] == {"n": 1} and job["status"] == "queued"
