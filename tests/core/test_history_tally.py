"""A worker's call that ends several jobs counts each in its minute's history field, as one finish per call
does (issue 16, profile 35: the last run time's bucket, the last field name and the last tallied field are
reused for alike finishes instead of made again). On the real Redis: the fields are compared with what each
record says (status, task, started_at, finished_at), so the expected buckets are exact whatever the call's
clock."""

from __future__ import annotations

from collections import Counter

from jobs_core import histogram
from jobs_core.delivery import Finish
from jobs_core.model import JobError, Result
from jobs_core.store import JobStore

W = "worker-h"
OK = Result(b'"ok"', "application/json")
ERR = JobError("Boom", "boom")


def expected_fields(store: JobStore, job_ids: list[str]) -> Counter[str]:
    """``j:<status>:<bucket>:<task>`` per ended job, from its record (the finish's own clock and start)."""
    out: Counter[str] = Counter()
    for job_id in job_ids:
        status, task, started, finished = (v.decode() for v in store.redis.hmget(
            store.keys.job(job_id), "status", "task", "started_at", "finished_at"))
        run_ms = max(0, int(finished) - int(started))
        out[f"j:{status}:{histogram.bucket(run_ms) if run_ms >= 1 else 0}:{task}"] += 1
    return out


def history_of(store: JobStore, job_ids: list[str]) -> Counter[str]:
    """The history hash fields of the minutes those jobs finished in."""
    minutes = {int(store.redis.hget(store.keys.job(j), "finished_at")) // 60000 for j in job_ids}
    out: Counter[str] = Counter()
    for minute in minutes:
        for field, n in store.redis.hgetall(store.keys.history(minute)).items():
            out[field.decode()] += int(n)
    return out


def test_one_call_ending_many_jobs_counts_each_in_its_field(store: JobStore) -> None:
    """Jobs of two tasks, three outcomes and run times that share a bucket, differ, are 0 ms (a start
    after the call's clock reads as 0) or equal, ended in one call, each next to one that differs from it by
    one part of the field name; then a second call in the same minute adds to the same fields."""
    now = int(store.redis.time()[0]) * 1000
    # (task, start, outcome), in this order: a field equal to the one before; one that differs from the one
    # before only by its task, only by its bucket (a 0 ms run: a start after the call's clock), only by its
    # status; other run times and outcomes; the last two are ended by a second call
    plan = [("echo", now - 5, "succeeded"), ("echo", now - 5, "succeeded"), ("other", now - 5, "succeeded"),
            ("other", now + 60_000, "succeeded"), ("other", now + 60_000, "succeeded"),
            ("other", now + 60_000, "failed"), ("echo", now - 12, "failed"), ("other", now - 9, "succeeded"),
            ("echo", now - 300, "failed"), ("echo", now - 4_000, "cancelled"), ("other", now - 1, "retry"),
            ("echo", now - 5, "succeeded"), ("other", now + 60_000, "succeeded")]
    for i, (task, _, _) in enumerate(plan):
        store.enqueue(task, {"i": i})
    claimed = store.claim(W, len(plan))
    assert [j.task for j in claimed] == [task for task, _, _ in plan]
    for job, (_, start, _) in zip(claimed, plan, strict=True):
        store.redis.hset(store.keys.job(job.id), "started_at", str(start))
    outcomes = [o for _, _, o in plan]
    first = [Finish(j.id, j.attempt, o, OK if o == "succeeded" else None, ERR if o != "succeeded" else None)
             for j, o in zip(claimed[:-2], outcomes[:-2], strict=True)]
    statuses, _ = store.finish_and_claim(W, first, 0)
    assert statuses == [o if o != "retry" else "queued" for o in outcomes[:-2]]
    ended = [j.id for j, o in zip(claimed[:-2], outcomes[:-2], strict=True) if o != "retry"]
    expected = expected_fields(store, ended)
    assert len(expected) >= 6 and expected.most_common(2)[1][1] == 2  # shared and distinct fields both seen
    assert history_of(store, ended) == expected
    # a second call: same tasks and run times as the first's, counted on top of them
    second = [Finish(j.id, j.attempt, "succeeded", OK) for j in claimed[-2:]]
    assert store.finish_and_claim(W, second, 0)[0] == ["succeeded", "succeeded"]
    ended += [j.id for j in claimed[-2:]]
    assert history_of(store, ended) == expected_fields(store, ended)
    totals = {f: v for f, v in store.history(store.settings.queue, 2)[-1].items() if not f.startswith("rt:")}
    if len({int(store.redis.hget(store.keys.job(j), "finished_at")) // 60000 for j in ended}) == 1:
        assert totals["finished"] == 12 and totals["failed"] == 3  # (every terminal status is finished)
