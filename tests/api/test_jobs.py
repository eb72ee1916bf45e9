"""GET /jobs, GET /jobs/<id> (long-poll), result, cancel and retry."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_core.config import Settings
from jobs_core.store import JobStore

from api.conftest import TASKS, Runner, make_app


def test_get_job(client: FlaskClient, submit: Any) -> None:
    job = submit("echo", params={"a": 1})
    resp = client.get(f"/jobs/{job['id']}")
    assert resp.status_code == 200
    assert resp.get_json() == job
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "job_id", [str(uuid.uuid4()), "not-a-uuid", "../../etc", str(uuid.uuid4()).upper(), "*", "a" * 300]
)
def test_unknown_or_malformed_id_is_404_everywhere(client: FlaskClient, job_id: str) -> None:
    for method, url in (
        ("GET", f"/jobs/{job_id}"),
        ("GET", f"/jobs/{job_id}?wait=1"),
        ("GET", f"/jobs/{job_id}/result"),
        ("DELETE", f"/jobs/{job_id}"),
        ("POST", f"/jobs/{job_id}/retry"),
    ):
        resp = client.open(url, method=method)
        assert resp.status_code == 404, (method, url)
        assert resp.content_type == "application/problem+json"


def test_list_newest_first_with_filters(client: FlaskClient, submit: Any, runner: Runner) -> None:
    a = submit("echo")
    b = submit("sleep")
    c = submit("echo")
    runner.fail(a["id"])
    ids = [j["id"] for j in client.get("/jobs").get_json()["jobs"]]
    assert ids == [c["id"], b["id"], a["id"]]
    assert [j["id"] for j in client.get("/jobs?task=echo").get_json()["jobs"]] == [c["id"], a["id"]]
    assert [j["id"] for j in client.get("/jobs?status=failed").get_json()["jobs"]] == [a["id"]]
    assert [j["id"] for j in client.get("/jobs?status=queued&task=echo").get_json()["jobs"]] == [c["id"]]
    assert client.get("/jobs?status=succeeded").get_json() == {"jobs": [], "next_cursor": None}


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=0", "/query/limit"),
        ("limit=201", "/query/limit"),
        ("limit=abc", "/query/limit"),
        ("limit=-1", "/query/limit"),
        ("limit=1.5", "/query/limit"),
        ("status=done", "/query/status"),
        ("cursor=abc", "/query/cursor"),
        ("cursor=" + "9" * 600, "/query/cursor"),
    ],
)
def test_bad_list_parameters_are_400(client: FlaskClient, query: str, path: str) -> None:
    resp = client.get(f"/jobs?{query}")
    assert resp.status_code == 400
    assert resp.get_json(force=True)["errors"][0]["path"] == path


def test_limit_bounds_are_accepted(client: FlaskClient, submit: Any) -> None:
    for _ in range(3):
        submit("echo")
    assert len(client.get("/jobs?limit=1").get_json()["jobs"]) == 1
    assert len(client.get("/jobs?limit=200").get_json()["jobs"]) == 3


def test_cursor_pagination_never_skips_or_repeats_under_concurrent_inserts(client: FlaskClient, submit: Any) -> None:
    existing = [submit("echo", params={"i": i})["id"] for i in range(45)]
    stop = threading.Event()
    inserted: list[str] = []

    def insert() -> None:  # another client keeps submitting while we page
        while not stop.is_set():
            resp = client.post("/jobs", json={"task": "echo", "params": {"new": True}})
            inserted.append(resp.get_json()["id"])

    thread = threading.Thread(target=insert)
    thread.start()
    try:
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            url = "/jobs?limit=7" + (f"&cursor={cursor}" if cursor else "")
            page = client.get(url).get_json()
            seen.extend(j["id"] for j in page["jobs"])
            pages += 1
            cursor = page["next_cursor"]
            time.sleep(0.01)
            if not cursor:
                break
    finally:
        stop.set()
        thread.join()
    assert len(inserted) > 0
    assert len(seen) == len(set(seen)), "a job was repeated"
    old = [i for i in seen if i in set(existing)]
    assert old == list(reversed(existing)), "a job was skipped or misordered"
    assert pages >= 7


def test_long_poll_returns_after_the_wait_when_the_job_stays_queued(client: FlaskClient, submit: Any) -> None:
    job = submit("sleep")
    start = time.monotonic()
    resp = client.get(f"/jobs/{job['id']}?wait=0.6")
    elapsed = time.monotonic() - start
    assert resp.status_code == 200 and resp.get_json()["status"] == "queued"
    assert 0.55 <= elapsed < 2.0


def test_long_poll_returns_as_soon_as_the_job_finishes(
    client: FlaskClient, submit: Any, runner: Runner, store: JobStore
) -> None:
    job = submit("sleep")
    timer = threading.Timer(0.4, lambda: runner.succeed(job["id"], {"done": True}))
    timer.start()
    start = time.monotonic()
    resp = client.get(f"/jobs/{job['id']}?wait=10")
    elapsed = time.monotonic() - start
    timer.join()
    assert resp.get_json()["status"] == "succeeded"
    assert 0.3 <= elapsed < 1.5, elapsed


def test_long_poll_on_a_terminal_job_returns_at_once(client: FlaskClient, submit: Any, runner: Runner) -> None:
    job = submit("sleep")
    runner.fail(job["id"])
    start = time.monotonic()
    assert client.get(f"/jobs/{job['id']}?wait=30").get_json()["status"] == "failed"
    assert time.monotonic() - start < 0.5


def test_long_poll_does_not_poll_redis(private_redis: Any, settings: Settings) -> None:
    # a Redis of its own, so the command count is this request's alone
    own = settings.replace(redis_url=private_redis.url)
    store = JobStore.from_settings(own)
    store.publish_tasks(TASKS)
    client = make_app(own, store).test_client()
    job = client.post("/jobs", json={"task": "sleep"}).get_json()
    before = int(store.redis.info("stats")["total_commands_processed"])
    start = time.monotonic()
    assert client.get(f"/jobs/{job['id']}?wait=2").get_json()["status"] == "queued"
    assert time.monotonic() - start >= 1.9
    used = int(store.redis.info("stats")["total_commands_processed"]) - before
    # read, subscribe, read, unsubscribe and the INFO calls, and the record's waiters count in and out (two
    # script calls: EXISTS + HINCRBY, then EXISTS + HINCRBY + HDEL); a polling loop would need dozens
    assert used <= 12 + 7, used


@pytest.mark.parametrize("wait", ["61", "-1", "abc", "nan", "inf", "1e3"])
def test_bad_wait_is_400(client: FlaskClient, submit: Any, wait: str) -> None:
    job = submit("sleep")
    resp = client.get(f"/jobs/{job['id']}?wait={wait}")
    assert resp.status_code == 400
    assert resp.get_json(force=True)["errors"][0]["path"] == "/query/wait"


def test_wait_bounds_are_accepted(client: FlaskClient, submit: Any, runner: Runner) -> None:
    job = submit("sleep")
    runner.fail(job["id"])
    for wait in ("0", "60", "0.25"):
        assert client.get(f"/jobs/{job['id']}?wait={wait}").status_code == 200


def test_result_of_a_succeeded_job(client: FlaskClient, submit: Any, runner: Runner) -> None:
    job = submit("echo", params={"x": [1, 2]})
    runner.succeed(job["id"], {"x": [1, 2]})
    resp = client.get(f"/jobs/{job['id']}/result")
    assert resp.status_code == 200
    assert resp.content_type == "application/json"
    assert resp.get_json() == {"x": [1, 2]}


def test_binary_result_keeps_its_media_type(client: FlaskClient, submit: Any, runner: Runner) -> None:
    job = submit("echo")
    runner.succeed(job["id"], raw=b"\x89PNG\r\n", media_type="image/png")
    resp = client.get(f"/jobs/{job['id']}/result")
    assert resp.status_code == 200
    assert resp.content_type == "image/png"
    assert resp.get_data() == b"\x89PNG\r\n"
    assert resp.headers["Content-Security-Policy"] == "sandbox"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_result_not_ready_is_409_with_the_status(client: FlaskClient, submit: Any, runner: Runner) -> None:
    job = submit("sleep")
    resp = client.get(f"/jobs/{job['id']}/result")
    assert resp.status_code == 409
    assert resp.get_json(force=True)["job_status"] == "queued"
    runner.claim(job["id"])
    assert client.get(f"/jobs/{job['id']}/result").get_json(force=True)["job_status"] == "running"
    other = submit("sleep")
    runner.fail(other["id"])
    assert client.get(f"/jobs/{other['id']}/result").get_json(force=True)["job_status"] == "failed"


def test_expired_result_is_410(client: FlaskClient, submit: Any, runner: Runner, store: JobStore) -> None:
    job = submit("echo")
    runner.succeed(job["id"], 1)
    store.redis.delete(store.keys.result(job["id"]))  # what the result TTL does
    resp = client.get(f"/jobs/{job['id']}/result")
    assert resp.status_code == 410
    assert resp.get_json(force=True)["type"] == "/problems/result-expired"


def test_cancel_queued_job_is_200_and_removes_it_from_the_queue(
    client: FlaskClient, submit: Any, store: JobStore
) -> None:
    job = submit("sleep")
    resp = client.delete(f"/jobs/{job['id']}")
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "cancelled"
    assert store.redis.llen(store.keys.queue) == 0


def test_cancel_running_job_is_202_cancel_requested(
    client: FlaskClient, submit: Any, runner: Runner, store: JobStore
) -> None:
    job = submit("sleep")
    runner.claim(job["id"])
    resp = client.delete(f"/jobs/{job['id']}")
    assert resp.status_code == 202
    assert resp.get_json()["status"] == "running"
    assert resp.get_json()["cancel_requested"] is True
    assert store.get(job["id"]).cancel_requested
    assert client.get(f"/jobs/{job['id']}").get_json()["cancel_requested"] is True
    assert job["cancel_requested"] is False


def test_cancel_terminal_job_is_409(client: FlaskClient, submit: Any, runner: Runner) -> None:
    job = submit("echo")
    runner.succeed(job["id"], 1)
    resp = client.delete(f"/jobs/{job['id']}")
    assert resp.status_code == 409
    assert resp.get_json(force=True)["job_status"] == "succeeded"
    cancelled = submit("echo")
    client.delete(f"/jobs/{cancelled['id']}")
    assert client.delete(f"/jobs/{cancelled['id']}").get_json(force=True)["job_status"] == "cancelled"


def test_retry_failed_and_cancelled_jobs(client: FlaskClient, submit: Any, runner: Runner, store: JobStore) -> None:
    failed = submit("echo")
    runner.fail(failed["id"])
    resp = client.post(f"/jobs/{failed['id']}/retry")
    assert resp.status_code == 202
    assert resp.headers["Location"] == f"/jobs/{failed['id']}"
    body = resp.get_json()
    assert body["status"] == "queued" and body["error"] is None
    cancelled = submit("echo")
    client.delete(f"/jobs/{cancelled['id']}")
    assert client.post(f"/jobs/{cancelled['id']}/retry").status_code == 202
    queued = [x.decode() for x in store.redis.lrange(store.keys.queue, 0, -1)]
    assert f'"{failed["id"]}"' in queued and f'"{cancelled["id"]}"' in queued


def test_retry_of_a_live_or_succeeded_job_is_409(client: FlaskClient, submit: Any, runner: Runner) -> None:
    queued = submit("echo")
    assert client.post(f"/jobs/{queued['id']}/retry").get_json(force=True)["job_status"] == "queued"
    running = submit("echo")
    runner.claim(running["id"])
    assert client.post(f"/jobs/{running['id']}/retry").status_code == 409
    done = submit("echo")
    runner.succeed(done["id"], 1)
    resp = client.post(f"/jobs/{done['id']}/retry")
    assert resp.status_code == 409 and resp.get_json(force=True)["job_status"] == "succeeded"


def test_retry_accepts_an_empty_or_json_body(client: FlaskClient, submit: Any, runner: Runner) -> None:
    job = submit("echo")
    runner.fail(job["id"])
    assert client.post(f"/jobs/{job['id']}/retry", json={}).status_code == 202
