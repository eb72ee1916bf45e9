"""The attempt log without cjson on the hot path (issue 16, profile 21): the claim writes an attempt's open
entry as text in one key order and the finish that ends it appends its end inside it; any other log (the
version before wrote the keys in cjson's order; a retried job's; one whose last attempt has ended) goes
through cjson as before. Readers see the same JSON either way. On the real Redis."""

from __future__ import annotations

import json

from jobs_core.delivery import Finish
from jobs_core.model import JobError, Result
from jobs_core.store import JobStore

W = "worker-a"
OK = Result(b'"ok"', "application/json")


def raw_log(store: JobStore, job_id: str) -> str:
    return store.redis.hget(store.keys.job(job_id), "attempt_log").decode()


def record_ms(store: JobStore, job_id: str, field: str) -> int:
    return int(store.redis.hget(store.keys.job(job_id), field))


def test_a_first_attempt_is_logged_as_text_in_one_key_order(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {"n": 1})
    (c,) = store.claim(W, 1)
    start = record_ms(store, job.id, "started_at")
    assert raw_log(store, job.id) == f'[{{"n":1,"worker":"{W}","start":{start}}}]'
    store.finish_and_claim(W, [Finish(c.id, c.attempt, "succeeded", OK)], 0)
    end = record_ms(store, job.id, "finished_at")
    assert raw_log(store, job.id) == (f'[{{"n":1,"worker":"{W}","start":{start},"end":{end},'
                                      f'"outcome":"succeeded"}}]')
    assert store.attempt_log(job.id) == [{"n": 1, "worker": W, "start": start, "end": end, "outcome": "succeeded"}]


def test_a_worker_id_that_json_escapes_round_trips(store: JobStore) -> None:
    odd = 'w/"quoted"\\x\u00e9:1'
    job, _ = store.enqueue("echo", {"n": 1})
    (c,) = store.claim(odd, 1)
    store.finish_and_claim(odd, [Finish(c.id, c.attempt, "failed", error=JobError("E", "m"))], 0)
    (entry,) = store.attempt_log(job.id)
    assert entry["worker"] == odd and entry["outcome"] == "failed" and entry["end"] >= entry["start"]


def test_a_log_in_the_key_order_of_the_version_before_is_ended_through_cjson(store: JobStore) -> None:
    """A job claimed by a worker of the version before (rolling upgrade) and finished by this one: the
    tail does not match the text form, so the finish decodes the log and ends its last attempt."""
    job, _ = store.enqueue("echo", {"n": 1})
    (c,) = store.claim(W, 1)
    start = record_ms(store, job.id, "started_at")
    older = [{"worker": "w-old", "start": 5, "n": 0, "outcome": "handback", "end": 7},
             {"start": start, "worker": W, "n": 1}]
    store.redis.hset(store.keys.job(job.id), "attempt_log", json.dumps(older, separators=(",", ":")))
    store.finish_and_claim(W, [Finish(c.id, c.attempt, "succeeded", OK)], 0)
    log = store.attempt_log(job.id)
    assert log[0] == older[0]
    assert log[1] == {"n": 1, "worker": W, "start": start, "end": record_ms(store, job.id, "finished_at"),
                      "outcome": "succeeded"}


def test_a_last_attempt_already_ended_is_left_as_it_is(store: JobStore) -> None:
    """As before: the finish changes the log only when its last attempt is open (no second end)."""
    job, _ = store.enqueue("echo", {"n": 1})
    (c,) = store.claim(W, 1)
    start = record_ms(store, job.id, "started_at")
    ended = f'[{{"n":1,"worker":"{W}","start":{start},"end":{start},"outcome":"lost"}}]'
    store.redis.hset(store.keys.job(job.id), "attempt_log", ended)
    store.finish_and_claim(W, [Finish(c.id, c.attempt, "succeeded", OK)], 0)
    assert raw_log(store, job.id) == ended


def test_retries_append_and_the_log_keeps_the_last_twenty(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {"n": 1}, max_attempts=3)
    (c,) = store.claim(W, 1)
    store.finish_and_claim(W, [Finish(c.id, c.attempt, "retry", error=JobError("E", "m"))], 0)
    (c,) = store.claim(W, 1)
    store.finish_and_claim(W, [Finish(c.id, c.attempt, "handback")], 0)
    (c,) = store.claim(W, 1)
    store.finish_and_claim(W, [Finish(c.id, c.attempt, "succeeded", OK)], 0)
    log = store.attempt_log(job.id)
    assert [(a["n"], a["outcome"]) for a in log] == [(1, "retry"), (2, "handback"), (2, "succeeded")]
    assert all(a["start"] <= a["end"] for a in log)
    # a record that already holds 20 attempts: the claim drops the oldest, the finish ends the newest
    job, _ = store.enqueue("echo", {"n": 2})
    full = [{"n": i, "worker": "w", "start": i, "end": i, "outcome": "handback"} for i in range(20)]
    store.redis.hset(store.keys.job(job.id), "attempt_log", json.dumps(full))
    (c,) = store.claim(W, 1)
    store.finish_and_claim(W, [Finish(c.id, c.attempt, "cancelled")], 0)
    log = store.attempt_log(job.id)
    assert len(log) == 20 and log[:19] == full[1:]
    assert (log[19]["n"], log[19]["worker"], log[19]["outcome"]) == (1, W, "cancelled")
