"""``Prefer: wait=N`` on POST /jobs (RFC 7240; issue 16's HTTP round trip): the request is held until the
job ends (200, the finished job, a JSON result inline) or N seconds pass (202); it is delivered on the
request thread's reply channel (no read after the submission); it takes a long-poll slot or is not held;
preferences it cannot honour are ignored, never an error."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from jobs_api.slots import held
from jobs_core import waiting
from jobs_core.config import Settings
from jobs_core.model import JobError, Result
from jobs_core.store import JobStore

from api.conftest import TASKS, make_app


class Worker:
    """A thread that claims the next queued job and ends it as told (the store calls a worker makes); a job
    whose params say ``"fail"`` fails."""

    def __init__(self, store: JobStore, outcome: str = "succeeded", result: Result | None = None) -> None:
        self.store, self.outcome, self.result = store, outcome, result
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            for job in self.store.claim("w", 1):
                outcome = "failed" if job.params.get("fail") else self.outcome
                error = JobError("Boom", "no") if outcome == "failed" else None
                result = self.result or Result(b'{"echo": ' + repr(job.params.get("n", 0)).encode() + b"}",
                                               "application/json")
                self.store.finish("w", job.id, job.attempt, outcome,
                                  result=result if outcome == "succeeded" else None, error=error)
            time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def worker(store: JobStore) -> Iterator[Worker]:
    w = Worker(store)
    yield w
    w.close()


def prefer(n: str) -> dict[str, str]:
    return {"Prefer": n}


def test_a_held_submission_answers_the_finished_job_with_its_result_inline(
    client: FlaskClient, worker: Worker
) -> None:
    resp = client.post("/jobs", json={"task": "echo", "params": {"n": 7}}, headers=prefer("wait=10"))
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert resp.headers["Preference-Applied"] == "wait" and resp.headers["Location"] == f"/jobs/{body['id']}"
    assert body["status"] == "succeeded" and body["result"] == {"echo": 7} and body["params"] == {"n": 7}
    assert client.get(f"/jobs/{body['id']}/result").get_json() == {"echo": 7}


def test_a_held_submission_reads_nothing_after_it_is_queued(private_redis: Any, settings: Settings) -> None:
    own = settings.replace(redis_url=private_redis.url)
    store = JobStore.from_settings(own)
    store.publish_tasks(TASKS)
    client = make_app(own, store).test_client()
    w = Worker(JobStore.from_settings(own))
    try:
        assert client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=10")).status_code == 200
        stats = store.redis.info("commandstats")
        before = {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hgetall", "subscribe")}
        resp = client.post("/jobs", json={"task": "echo", "params": {"n": 2}}, headers=prefer("wait=10"))
        assert resp.status_code == 200 and resp.get_json()["result"] == {"echo": 2}
        stats = store.redis.info("commandstats")
        after = {c: int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("hgetall", "subscribe")}
    finally:
        w.close()
    # the finish's own HGETALL (the record it delivers); the request subscribed nothing and read nothing
    assert {c: after[c] - before[c] for c in after} == {"hgetall": 1, "subscribe": 0}


def test_a_failed_job_and_a_non_json_result_are_answered_without_a_result(client: FlaskClient,
                                                                          store: JobStore) -> None:
    w = Worker(store, "failed")
    try:
        resp = client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=10"))
    finally:
        w.close()
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "failed" and body["error"]["type"] == "Boom"
    assert "result" not in body
    w = Worker(store, result=Result(b"\x00raw", "application/octet-stream"))
    try:
        resp = client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=10"))
    finally:
        w.close()
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "succeeded" and "result" not in body
    assert client.get(body["links"]["result"]).data == b"\x00raw"


def test_the_wait_passes_and_the_job_is_answered_as_it_is(client: FlaskClient, store: JobStore) -> None:
    start = time.monotonic()
    resp = client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=1"))
    assert time.monotonic() - start >= 0.9  # it was held
    assert resp.status_code == 202 and resp.headers["Preference-Applied"] == "wait"
    assert resp.get_json()["status"] == "queued"


def test_the_wait_is_cut_to_the_configured_maximum(settings: Settings, store: JobStore) -> None:
    store.publish_tasks(TASKS)
    client = make_app(settings.replace(prefer_wait_max_seconds=1), store).test_client()
    start = time.monotonic()
    resp = client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=600"))
    assert resp.status_code == 202 and resp.headers["Preference-Applied"] == "wait"
    assert time.monotonic() - start < 10  # 1 s, not 600
    off = make_app(settings.replace(prefer_wait_max_seconds=0), store).test_client()
    resp = off.post("/jobs", json={"task": "echo"}, headers=prefer("wait=5"))
    assert resp.status_code == 202 and "Preference-Applied" not in resp.headers


def test_a_cancel_ends_a_held_submission_at_once(private_redis: Any, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The cancel delivers the cancelled job on the request thread's reply channel (includes/emit.lua):
    the held request answers on that message and reads nothing. The waiter's re-read is pushed out of
    reach, so a request that missed the message would read the record when its wait slice ends: the
    HGETALL count after the cancel is what fails, not a clock."""
    monkeypatch.setattr(waiting, "REREAD_SECONDS", 3600.0)
    own = settings.replace(redis_url=private_redis.url)
    store = JobStore.from_settings(own)
    store.publish_tasks(TASKS)
    client = make_app(own, store).test_client()
    canceller = JobStore.from_settings(own)
    seen: list[int] = []

    def hgetalls() -> int:
        return int(canceller.redis.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))

    def cancel_it() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            jobs, _ = canceller.list_jobs()
            if jobs:
                canceller.cancel(jobs[0].id)
                seen.append(hgetalls())
                return
            time.sleep(0.02)

    t = threading.Thread(target=cancel_it)
    t.start()
    resp = client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=20"))
    t.join()
    body = resp.get_json()
    assert resp.status_code == 200 and body["status"] == "cancelled" and body["finished_at"], body
    assert seen == [hgetalls()]  # nothing read after the cancel: the message answered the request


@pytest.mark.parametrize("value", ["wait=abc", "wait=-1", "wait=1.5", "wait=", "wait", "wait=0",
                                   "respond-async, wait=10", "wait=99999999999", "return=minimal", ";;,,=",
                                   "wait=\u0661"])
def test_preferences_it_cannot_honour_are_ignored(client: FlaskClient, value: str) -> None:
    start = time.monotonic()
    resp = client.post("/jobs", json={"task": "echo"}, headers=prefer(value))
    assert resp.status_code == 202 and "Preference-Applied" not in resp.headers, value
    assert resp.get_json()["status"] == "queued" and time.monotonic() - start < 5


@pytest.mark.parametrize("value", ['wait="1"', "WAIT = 1", "handling=lenient, wait=1; x=y", "wait=1, wait=60"])
def test_rfc_7240_spellings_of_wait_are_honoured(client: FlaskClient, value: str) -> None:
    resp = client.post("/jobs", json={"task": "echo"}, headers=prefer(value))
    assert resp.status_code == 202 and resp.headers.get("Preference-Applied") == "wait", value


def test_with_no_long_poll_slot_free_the_submission_is_not_held(client: FlaskClient) -> None:
    slots = held()
    taken = 0
    while slots.acquire(blocking=False):
        taken += 1
    try:
        start = time.monotonic()
        resp = client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=30"))
        assert resp.status_code == 202 and "Preference-Applied" not in resp.headers
        assert time.monotonic() - start < 10
    finally:
        for _ in range(taken):
            slots.release()


def test_an_idempotent_repeat_is_held_too(client: FlaskClient, worker: Worker) -> None:
    first = client.post("/jobs", json={"task": "echo"}, headers={"Idempotency-Key": "p1", **prefer("wait=10")})
    again = client.post("/jobs", json={"task": "echo"}, headers={"Idempotency-Key": "p1", **prefer("wait=10")})
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["result"] == first.get_json()["result"]


def test_a_held_submission_that_timed_out_leaves_nothing_kept_for_its_thread(client: FlaskClient,
                                                                            store: JobStore) -> None:
    """The API thread serves other requests (other tenants) next: the job's later end message is dropped,
    not kept in the thread's stash."""
    resp = client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=1"))
    assert resp.status_code == 202
    job_id = resp.get_json()["id"]
    listener = store._local.listener  # the app's store (api/conftest.py), and the request ran on this thread
    assert job_id not in listener.expected
    (claimed,) = store.claim("w", 1)
    store.finish("w", job_id, claimed.attempt, "succeeded", result=Result(b"1", "application/json"))
    w = Worker(store)
    try:  # the next held submission on the thread reads past the first job's message
        assert client.post("/jobs", json={"task": "echo"}, headers=prefer("wait=10")).status_code == 200
    finally:
        w.close()
    assert job_id not in listener.stash and not listener.stash and not listener.expected
