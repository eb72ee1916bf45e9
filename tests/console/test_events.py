"""GET /events: job changes as Server-Sent Events, written by the Lua scripts in the same step as the change;
tenant-scoped, resumable with Last-Event-ID, capped per process."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pytest
from api.conftest import Runner, ValidatingClient
from flask import Flask
from flask.testing import FlaskClient
from jobs_api import slots
from jobs_core.config import Settings
from jobs_core.store import JobStore

from console.conftest import KEY_ALPHA, Browser, console_app

ADMIN = "key-admin-events-0123456789"
VIEWER = "key-viewer-events-0123456789"


@pytest.fixture
def app(settings: Settings, store: JobStore) -> Flask:
    app = console_app(settings, store, f"alpha:{KEY_ALPHA},beta:key-beta-events-012345,ops:{ADMIN}:admin,"
                                       f"alpha:{VIEWER}:viewer")
    app.test_client_class = ValidatingClient  # every response checked against /openapi.json
    return app


def _h(key: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **more}


def parse(body: bytes) -> list[dict[str, Any]]:
    """SSE frames as {id, event, data} (comments and the retry line left out)."""
    out = []
    for block in body.decode().split("\n\n"):
        frame: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name in ("id", "event"):
                frame[name] = value
            elif name == "data":
                frame["data"] = orjson.loads(value)
        if "event" in frame:
            out.append(frame)
    return out


def stream(client: FlaskClient, key: str, query: str = "max_seconds=0.5", **headers: str) -> list[dict[str, Any]]:
    resp = client.get(f"/events?{query}", headers=_h(key, **headers))
    assert resp.status_code == 200, resp.get_data()
    assert resp.mimetype == "text/event-stream" and resp.headers["Cache-Control"] == "no-store"
    body = resp.get_data()
    resp.close()  # as a WSGI server does when the response ends: the stream's slots go back
    assert body.startswith(b"retry: 2000\n")
    return parse(body)


def test_every_change_is_an_event_in_order(store: JobStore, runner: Runner) -> None:
    start = store.last_event_id()
    job, _ = store.enqueue("echo", {}, owner="alpha")
    runner.fail(job.id)
    store.retry(job.id)
    store.cancel(job.id)
    events = store.read_events(start, 1).events
    assert [(e["job"], e["status"], e["tenant"]) for _, e in events] == [
        (job.id, s, "alpha") for s in ("queued", "running", "failed", "queued", "cancelled")
    ]
    ids = [i for i, _ in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


def test_a_tenant_streams_only_its_own_jobs_resuming_after_last_event_id(app: Flask, store: JobStore) -> None:
    client = app.test_client()
    start = store.last_event_id()
    mine = [store.enqueue("echo", {}, owner="alpha")[0].id for _ in range(3)]
    theirs = store.enqueue("echo", {}, owner="beta")[0].id
    events = stream(client, KEY_ALPHA, **{"Last-Event-ID": start})
    assert [e["data"]["job"] for e in events] == mine and all(e["event"] == "job" for e in events)
    assert theirs not in str(events)
    # resume after the second: exactly the third (EventSource sends Last-Event-ID when it reconnects)
    again = stream(client, KEY_ALPHA, **{"Last-Event-ID": events[1]["id"]})
    assert [e["data"]["job"] for e in again] == mine[2:]
    assert [e["data"]["job"] for e in stream(client, KEY_ALPHA, f"max_seconds=0.5&last_event_id={start}")] == mine
    # a tenant asking for another tenant still gets its own
    assert theirs not in str(stream(client, VIEWER, f"max_seconds=0.5&tenant=beta&last_event_id={start}"))
    admin = stream(client, ADMIN, f"max_seconds=0.5&last_event_id={start}")
    assert {e["data"]["job"] for e in admin} == {*mine, theirs}
    only_beta = stream(client, ADMIN, f"max_seconds=0.5&tenant=beta&last_event_id={start}")
    assert [e["data"]["job"] for e in only_beta] == [theirs]


def test_one_steps_changes_are_one_event_each_resumable_inside_the_entry_and_filtered_per_tenant(
        app: Flask, store: JobStore) -> None:
    """A script call that changed several jobs wrote one stream entry (issue 16): each change is its own
    `event: job`, id `<entry>:<k>`; Last-Event-ID from inside the entry skips exactly what was seen; each
    tenant sees only its own jobs' events of a mixed entry."""
    client = app.test_client()
    a1, b1, a2 = (store.enqueue("echo", {}, owner=t)[0].id for t in ("alpha", "beta", "alpha"))
    start = store.last_event_id()
    assert [j.id for j in store.claim("w-events", 3)] == [a1, b1, a2]  # one FINISH_CLAIM call
    later = store.enqueue("echo", {}, owner="alpha")[0].id  # a single-event entry after it
    admin = stream(client, ADMIN, f"max_seconds=0.5&last_event_id={start}")
    assert [(e["data"]["job"], e["data"]["status"], e["data"]["tenant"]) for e in admin] == [
        (a1, "running", "alpha"), (b1, "running", "beta"), (a2, "running", "alpha"), (later, "queued", "alpha")]
    entry = admin[0]["id"].split(":")[0]
    assert [e["id"] for e in admin[:3]] == [f"{entry}:{k}" for k in range(3)] and ":" not in admin[3]["id"]
    alpha = stream(client, KEY_ALPHA, f"max_seconds=0.5&last_event_id={start}")
    assert [(e["id"], e["data"]["job"]) for e in alpha] == [
        (f"{entry}:0", a1), (f"{entry}:2", a2), (admin[3]["id"], later)]
    beta = stream(client, "key-beta-events-012345", f"max_seconds=0.5&last_event_id={start}")
    assert [(e["id"], e["data"]["job"]) for e in beta] == [(f"{entry}:1", b1)]
    assert a1 not in str(beta) and a2 not in str(beta) and b1 not in str(alpha)
    # resumed inside the entry (EventSource's Last-Event-ID, or the query): exactly the rest
    for k in range(3):
        again = stream(client, ADMIN, "max_seconds=0.5", **{"Last-Event-ID": f"{entry}:{k}"})
        assert [e["data"]["job"] for e in again] == [a1, b1, a2, later][k + 1:]
    assert [e["data"]["job"] for e in stream(client, KEY_ALPHA, f"max_seconds=0.5&last_event_id={entry}:0")] == [
        a2, later]
    assert [e["data"]["job"] for e in stream(client, "key-beta-events-012345",
                                             f"max_seconds=0.5&last_event_id={entry}:1")] == []
    # a plain entry id (what a client of before holds) skips the whole entry, as it always did
    assert [e["data"]["job"] for e in stream(client, ADMIN, "max_seconds=0.5", **{"Last-Event-ID": entry})] == [
        later]


def test_live_events_arrive_while_the_stream_is_open(app: Flask, store: JobStore) -> None:
    client = app.test_client()
    store.enqueue("echo", {}, owner="alpha")  # the stream starts after this one
    later: list[str] = []

    def submit_soon() -> None:
        time.sleep(0.5)
        later.append(store.enqueue("echo", {}, owner="alpha")[0].id)

    threading.Thread(target=submit_soon).start()
    events = stream(client, KEY_ALPHA, "max_seconds=2")
    assert [e["data"]["job"] for e in events] == later


def test_a_resume_after_trimmed_events_says_reset(app: Flask) -> None:
    events = stream(app.test_client(), KEY_ALPHA, **{"Last-Event-ID": "1-0"})
    assert events[0]["event"] == "reset"


def test_bad_input_and_auth(app: Flask, settings: Settings, store: JobStore) -> None:
    client = app.test_client()
    for query, headers in (("", {"Last-Event-ID": "yesterday"}), ("last_event_id=1", {}),
                           ("tenant=a:b", {}), ("max_seconds=-1", {}), ("max_seconds=99999", {}),
                           # found by the fuzzer (500 before): ids Redis refuses although they looked numeric
                           ("", {"Last-Event-ID": "99999999999999999999-0"}),
                           ("last_event_id=%C2%B2-1", {}), ("last_event_id=1-1%0A", {}),
                           # an event inside an entry is <entry>:<k>, nothing else after the colon
                           ("", {"Last-Event-ID": "1-0:"}), ("", {"Last-Event-ID": "1-0:x"}),
                           ("last_event_id=1-0:1:2", {})):
        resp = client.get(f"/events?{query}", headers=_h(ADMIN, **headers))
        assert resp.status_code == 400 and resp.mimetype == "application/problem+json", query
    assert client.get("/events").status_code == 401
    assert client.get("/events", headers=_h("wrong")).status_code == 401


def test_a_console_session_can_stream(app: Flask) -> None:
    b = Browser(app.test_client())
    b.login(KEY_ALPHA)
    resp = b.client.get("/events?max_seconds=0")
    resp.close()
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"


def test_streams_are_capped_per_process_with_503(app: Flask) -> None:
    held = [slots.streams().acquire(blocking=False) for _ in range(slots.stream_limit())]
    try:
        assert all(held)
        resp = app.test_client().get("/events?max_seconds=0", headers=_h(KEY_ALPHA))
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
        assert resp.get_json()["type"] == "/problems/too-many-streams"
    finally:
        for _ in held:
            slots.streams().release()
    # a finished stream gives its slots back
    for _ in range(slots.stream_limit() + 1):
        stream(app.test_client(), KEY_ALPHA, "max_seconds=0")


def test_queue_changes_are_queue_events_for_every_tenant_resumable(app: Flask, store: JobStore,
                                                                   settings: Settings) -> None:
    """Pause / resume / cap through the API or the console are `event: queue` on every stream (queues are
    cluster-wide, as GET /queues); who did it is shown to admins only; a no-op sends nothing."""
    client = app.test_client()
    queue = settings.queue
    start = store.last_event_id()
    assert client.post(f"/queues/{queue}/pause", headers=_h(ADMIN)).status_code == 200
    assert client.post(f"/queues/{queue}/pause", headers=_h(ADMIN)).status_code == 200  # already paused
    assert client.put(f"/queues/{queue}/cap", json={"cap": 3}, headers=_h(ADMIN)).status_code == 200
    job = store.enqueue("echo", {}, owner="alpha")[0].id
    admin_ui = Browser(app.test_client())
    admin_ui.login(ADMIN)
    admin_ui.get("/ui/queues")
    assert admin_ui.post(f"/ui/queues/{queue}/resume").status_code == 303
    for key in (KEY_ALPHA, VIEWER):  # a tenant's operator and viewer
        events = stream(client, key, f"max_seconds=0.5&last_event_id={start}")
        assert [(e["event"], e["data"].get("change") or e["data"].get("job")) for e in events] == [
            ("queue", "pause"), ("queue", "cap"), ("job", job), ("queue", "resume")]
        pause, cap, _, resume = (e["data"] for e in events)
        assert pause == {"queue": queue, "change": "pause", "paused": True, "cap": None, "role": "admin",
                         "via": "api", "at": pause["at"]} and pause["at"].endswith("Z")
        assert cap["cap"] == 3 and cap["paused"] is True
        assert resume["paused"] is False and resume["cap"] == 3 and resume["via"] == "console"
    admin = stream(client, ADMIN, f"max_seconds=0.5&tenant=beta&last_event_id={start}")
    assert [e["event"] for e in admin] == ["queue"] * 3  # the tenant filter narrows jobs, not queues
    assert admin[0]["data"]["by"]["tenant"] == "ops" and len(admin[0]["data"]["by"]["key_id"]) == 12
    assert ADMIN not in str(admin)
    # resumable: after the cap event, exactly the job and the resume
    after = stream(client, KEY_ALPHA, "max_seconds=0.5", **{"Last-Event-ID": admin[1]["id"]})
    assert [e["event"] for e in after] == ["job", "queue"]


def test_the_queue_forms_carry_the_session_csrf_token(app: Flask) -> None:
    """The queue table's pause / cap forms (a macro of its own) post this session's CSRF token: found by
    the browser test above, where every console pause answered 403 (the macro had no page context)."""
    b = Browser(app.test_client())
    b.login(ADMIN)
    html = b.get("/ui/queues").get_data(as_text=True)
    assert 'id="setcap-' in html
    assert html.count(f'name="csrf_token" value="{b.csrf}"') == 1 + 2 * html.count('id="setcap-')  # + log out
