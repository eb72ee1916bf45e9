"""Resumable console bulk actions on the store (real Redis): each chunk's changes and its checkpoint are one
step, a process that lost its lease is refused, a takeover finishes from the cursor, counts are exact and
the audit log has one start and one end. Processes dying for real: tests/reliability/test_bulk_takeover.py."""

from __future__ import annotations

import json

from jobs_core.bulk_store import BULK_MAX_CLAIMS, holder_token
from jobs_core.model import JobStatus
from jobs_core.store import JobStore


def _expire_lease(store: JobStore, op_id: str) -> None:
    """What the holder's death looks like once its lease has run out (without waiting it out)."""
    store.redis.zadd(store.keys.bulk_running, {op_id: 0})


def _plan(store: JobStore, action: str, ids: list[str], owner: str | None = None) -> str:
    op_id = store.create_bulk(action, "alpha/operator/k1", {"status": "queued"}, ids, True, owner=owner,
                              tenant="alpha")
    assert store.start_bulk(op_id, "A", {"who": "alpha/operator/k1", "tenant": "alpha", "event": "started",
                                         "action": action, "bulk": op_id, "planned": len(ids)})
    return op_id


def test_a_takeover_resumes_from_the_checkpoint_and_fences_the_old_holder(store: JobStore) -> None:
    ids = [store.enqueue("echo", {"i": i}, owner="alpha")[0].id for i in range(25)]
    op_id = _plan(store, "cancel", ids)
    assert not store.start_bulk(op_id, "A2", {})  # a double submit starts nothing
    first = store.bulk_chunk(op_id, "A", 10)
    assert (first.outcome, first.done, first.changed) == ("more", 10, 10)
    assert store.claim_bulk("B") is None  # A's lease is alive: nobody takes it
    _expire_lease(store, op_id)  # A dies
    holder = holder_token()
    assert store.claim_bulk(holder) == op_id
    assert store.bulk_chunk(op_id, "A", 10).outcome == "lost"  # A comes back: refused, nothing changed
    assert store.bulk(op_id)["done"] == "10"  # type: ignore[index]
    end = store.run_bulk(op_id, holder, rate=10_000)
    assert (end.outcome, end.done, end.changed, end.skipped) == ("done", 25, 25, 0)
    assert all(j.status is JobStatus.CANCELLED for j in store.get_many(ids))
    assert store.redis.llen(store.keys.queue) == 0 and store.redis.zcard(store.keys.bulk_running) == 0
    plan = store.bulk(op_id)
    assert plan is not None and (plan["state"], plan["claims"], plan["cursor"]) == ("done", "1", "25")
    events = [e for e in store.audit_log() if e["target"] == f"bulk:{op_id}"]
    assert [e["outcome"] for e in events] == ["ok", "started"]  # finished, started (the audit stream's form)
    assert (events[0]["action"], events[0]["tenant"], events[0]["count"], events[0]["via"]) == (
        "bulk.cancel", "alpha", 25, "console")
    assert json.loads(events[0]["detail"]) == {"planned": 25, "done": 25, "changed": 25, "skipped": 0}
    assert store.bulk_chunk(op_id, holder, 10).outcome == "lost"  # ended: nothing more to apply


def test_retry_across_queues_skips_jobs_that_moved_on_and_other_tenants(store: JobStore, namespace: str) -> None:
    other_queue = f"{namespace}-gpu"
    ids = []
    for i in range(6):
        job, _ = store.enqueue("echo", {"i": i}, owner="alpha", queue=other_queue if i % 2 else None)
        ids.append(job.id)
    worker = JobStore.from_settings(store.settings.replace(queues=(namespace, other_queue)))
    for claimed in worker.claim("w", 6):
        worker.finish("w", claimed.id, claimed.attempt, "failed")
    foreign = store.enqueue("echo", {}, owner="beta")[0].id
    (claimed,) = worker.claim("w", 1)
    worker.finish("w", claimed.id, claimed.attempt, "failed")
    op_id = _plan(store, "retry", [*ids, foreign], owner="alpha")
    store.retry(ids[0])  # moved on since the preview
    end = store.run_bulk(op_id, "A", rate=10_000)
    assert (end.outcome, end.done, end.changed, end.skipped) == ("done", 7, 5, 2)
    assert all(j.status is JobStatus.QUEUED for j in store.get_many(ids))
    assert store.get(foreign).status is JobStatus.FAILED
    assert store.redis.llen(f"hotqueue:{other_queue}") == 3 and store.redis.llen(store.keys.queue) == 3


def test_an_action_taken_over_too_often_is_given_up_and_audited(store: JobStore) -> None:
    ids = [store.enqueue("echo", {})[0].id for _ in range(3)]
    op_id = _plan(store, "cancel", ids)
    for _ in range(BULK_MAX_CLAIMS):
        _expire_lease(store, op_id)
        assert store.claim_bulk(holder_token()) == op_id
    _expire_lease(store, op_id)
    assert store.claim_bulk(holder_token()) is None
    assert store.bulk(op_id)["state"] == "failed"  # type: ignore[index]
    assert [e["outcome"] for e in store.audit_log() if e["target"] == f"bulk:{op_id}"] == ["failed", "started"]
    assert all(j.status is JobStatus.QUEUED for j in store.get_many(ids))


def test_an_empty_plan_ends_at_its_first_chunk(store: JobStore) -> None:
    op_id = _plan(store, "retry", [])
    assert store.run_bulk(op_id, "A", rate=5).outcome == "done"
    assert store.bulk(op_id)["state"] == "done"  # type: ignore[index]


def test_a_stopping_runner_hands_its_action_back_for_an_immediate_takeover(store: JobStore) -> None:
    import threading

    ids = [store.enqueue("echo", {})[0].id for _ in range(30)]
    op_id = _plan(store, "cancel", ids)
    stop = threading.Event()
    stop.set()  # the process got SIGTERM: stop after the current chunk
    step = store.run_bulk(op_id, "A", rate=10, stop=stop)
    assert (step.outcome, step.done) == ("stopped", 10)
    assert not store.release_bulk(op_id, "someone-else")  # only the holder hands it back
    assert store.claim_bulk("B") is None  # not handed back yet: A's lease still runs
    assert store.release_bulk(op_id, "A")
    assert store.claim_bulk("B") == op_id  # at once, no lease to wait out
    assert store.bulk_chunk(op_id, "A", 10).outcome == "lost"
    assert store.run_bulk(op_id, "B", rate=10_000).outcome == "done"
    assert store.bulk(op_id)["changed"] == "30"  # type: ignore[index]
