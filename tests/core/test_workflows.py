"""Jobs that wait for other jobs, on the real Redis: ordering and refusals, release exactly once when the
last dependency succeeds (also after duplicate finishes and retries), cascading cancels, 'ignore' edges,
waiting jobs outside the waiting lists, dependency results."""

from __future__ import annotations

import time

import orjson
import pytest
from jobs_core.errors import InvalidWorkflow
from jobs_core.model import JobError, JobStatus, Result, is_job_id
from jobs_core.store import JobStore
from jobs_core.workflows import Dependency, FlowNode, OnFailure, order

W = "w1"


def snapshot(store: JobStore) -> dict[bytes, bytes]:
    """Every key of the test's namespace with its DUMP (the Redis is shared: never count the whole db)."""
    keys = sorted(store.redis.scan_iter(f"{store.keys.prefix}:*", count=1000))
    return {k: store.redis.dump(k) or b"" for k in keys}


def node(name: str, *deps: str | Dependency, task: str = "echo") -> FlowNode:
    return FlowNode(name, task, {"n": name}, tuple(d if isinstance(d, Dependency) else Dependency(d) for d in deps))


def queue_ids(store: JobStore) -> list[str]:
    return [x.decode().strip('"') for x in store.redis.lrange(store.keys.queue, 0, -1)]


def run(store: JobStore, job_id: str, outcome: str = "succeeded", result: object = None) -> str | None:
    """Claim jobs until ``job_id`` is taken (others handed back) and end it with ``outcome``."""
    others = []
    try:
        while True:
            claimed = store.claim(W, 1)
            assert claimed, f"{job_id} not claimable: {store.get(job_id).status}"
            if claimed[0].id == job_id:
                break
            others.append(claimed[0])
    finally:
        for o in others:
            store.finish(W, o.id, o.attempt, "handback")
    attempt = claimed[0].attempt
    return store.finish(W, job_id, attempt, outcome, result=Result(orjson.dumps(result), "application/json"),
                        error=JobError("RuntimeError", "boom") if outcome == "failed" else None)


def status(store: JobStore, job_id: str) -> JobStatus:
    return store.get(job_id).status


# --------------------------------------------------------------------------------------- the graph
def test_order_refuses_cycles_unknown_references_and_duplicates() -> None:
    with pytest.raises(InvalidWorkflow) as e:
        order([node("a", "c"), node("b", "a"), node("c", "b"), node("d")], is_job_id)
    assert e.value.errors == [("/nodes", "dependency cycle among nodes 'a', 'b', 'c'")]
    with pytest.raises(InvalidWorkflow) as e:
        order([node("a", "nope"), node("a"), node("b", "b")], is_job_id)
    paths = [p for p, _ in e.value.errors]
    assert paths == ["/nodes/1/name", "/nodes/0/depends_on/0", "/nodes/2/depends_on/0"]
    ordered = [n.name for n in order([node("c", "a", "b"), node("b", "a"), node("a")], is_job_id)]
    assert ordered.index("a") < ordered.index("b") < ordered.index("c")


# ------------------------------------------------------------------------------------ release rules
def test_chain_runs_in_order_and_waiting_jobs_are_in_no_list(store: JobStore) -> None:
    wf, (a, b, c) = store.submit_flow("t", [node("a"), node("b", "a"), node("c", "b")], workflow=True)
    assert wf and [j.status for j in (a, b, c)] == [JobStatus.QUEUED, JobStatus.WAITING, JobStatus.WAITING]
    assert queue_ids(store) == [a.id]
    assert store.redis.hget(store.keys.pending, "t") == b"1"
    assert run(store, a.id, result={"v": 1}) == "succeeded"
    assert status(store, b.id) is JobStatus.QUEUED and queue_ids(store) == [b.id]
    assert store.dependency_results(b.id) == {a.id: {"v": 1}}
    run(store, b.id)
    run(store, c.id)
    assert store.get_workflow(wf).status == "succeeded"


def test_fan_in_is_released_once_by_the_last_dependency_only(store: JobStore) -> None:
    nodes = [node(f"m{i}") for i in range(5)] + [node("join", *[f"m{i}" for i in range(5)])]
    _, jobs = store.submit_flow("t", nodes, workflow=True)
    join = jobs[-1]
    for member in jobs[:4]:
        run(store, member.id)
        assert status(store, join.id) is JobStatus.WAITING
    claimed = [c for c in store.claim(W, 10) if c.id == jobs[4].id]
    store.finish(W, jobs[4].id, claimed[0].attempt, "succeeded", result=Result(b"1", "application/json"))
    # the same finish again (a re-sent reply, a second worker): stale, releases nothing more
    assert store.finish(W, jobs[4].id, claimed[0].attempt, "succeeded", result=Result(b"1", "application/json")) is None
    assert status(store, join.id) is JobStatus.QUEUED
    assert queue_ids(store).count(join.id) == 1
    assert store.redis.hget(store.keys.job(join.id), "deps_left") == b"0"


def test_failure_cascades_to_every_transitive_dependent(store: JobStore) -> None:
    nodes = [node("a"), node("b", "a"), node("c", "b"), node("d", "b", "x"), node("x"), node("e", "x")]
    wf, jobs = store.submit_flow("t", nodes, workflow=True)
    by = {n.name: j for n, j in zip(nodes, jobs, strict=True)}
    run(store, by["a"].id, "failed")
    for name in ("b", "c", "d"):
        job = store.get(by[name].id)
        assert job.status is JobStatus.CANCELLED and job.error is not None and job.error.type == "DependencyFailed"
    assert status(store, by["e"].id) is JobStatus.WAITING  # not downstream of a
    run(store, by["x"].id)
    assert status(store, by["e"].id) is JobStatus.QUEUED
    assert store.get_workflow(wf).status == "running"
    assert by["b"].id not in queue_ids(store)


def test_ignore_edge_runs_anyway_and_a_retried_dependency_releases_nothing_twice(store: JobStore) -> None:
    nodes = [node("a"), node("b"), node("after", Dependency("a", OnFailure.IGNORE), "b")]
    _, (a, b, after) = store.submit_flow("t", nodes, workflow=True)
    run(store, a.id, "failed")
    assert status(store, after.id) is JobStatus.WAITING
    store.retry(a.id)  # failed -> queued; it ends again below, its edge already consumed
    run(store, a.id)
    assert status(store, after.id) is JobStatus.WAITING
    assert store.redis.hget(store.keys.job(after.id), "deps_left") == b"1"
    run(store, b.id)
    assert status(store, after.id) is JobStatus.QUEUED


def test_cancelling_a_waiting_job_or_a_dependency_cascades(store: JobStore) -> None:
    _, (a, b, c) = store.submit_flow("t", [node("a"), node("b", "a"), node("c", "b")], workflow=True)
    assert store.cancel(b.id).status is JobStatus.CANCELLED
    assert status(store, c.id) is JobStatus.CANCELLED
    assert status(store, a.id) is JobStatus.QUEUED
    wf, (x, y) = store.submit_flow("t", [node("x"), node("y", "x")], workflow=True)
    assert wf is not None
    store.cancel_workflow(wf)
    assert [status(store, j.id) for j in (x, y)] == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert store.get_workflow(wf).status == "cancelled"
    assert int(store.redis.hget(store.keys.pending, "t") or 0) == 1  # only a is still pending


def test_depends_on_existing_jobs_and_refusals(store: JobStore) -> None:
    done, _ = store.enqueue("echo", {}, owner="t")
    run(store, done.id)
    live, _ = store.enqueue("echo", {}, owner="t")
    failed, _ = store.enqueue("echo", {}, owner="t", max_attempts=1)
    run(store, failed.id, "failed")
    _, (ready,) = store.submit_flow("t", [node("r", done.id)], workflow=False)
    assert ready.status is JobStatus.QUEUED
    _, (waits,) = store.submit_flow("t", [node("w", done.id, live.id)], workflow=False)
    assert waits.status is JobStatus.WAITING
    _, (doomed,) = store.submit_flow("t", [node("d", failed.id)], workflow=False)
    assert doomed.status is JobStatus.CANCELLED and doomed.error is not None
    _, (anyway,) = store.submit_flow("t", [node("i", Dependency(failed.id, OnFailure.IGNORE))], workflow=False)
    assert anyway.status is JobStatus.QUEUED
    before = snapshot(store)
    for bad in (str(live.id).replace("-", "0", 1)[:36], "00000000-0000-4000-8000-000000000000"):
        with pytest.raises(InvalidWorkflow):
            store.submit_flow("t", [node("a"), node("b", "a", bad)], workflow=True)
    with pytest.raises(InvalidWorkflow):  # another tenant's job is unknown
        store.submit_flow("other", [node("a", live.id)], workflow=False)
    assert snapshot(store) == before  # nothing of a refused workflow was written
    run(store, live.id)
    assert status(store, waits.id) is JobStatus.QUEUED


def test_the_reaper_failing_a_lost_job_cascades(store: JobStore) -> None:
    _, (a, b) = store.submit_flow("t", [FlowNode("a", "echo", max_attempts=1), node("b", "a")], workflow=True)
    claimed = store.claim(W, 1)
    assert claimed[0].id == a.id
    store.redis.zadd(store.keys.leases, {a.id: 0})  # the worker died: its lease is long expired
    time.sleep(0.01)
    report = store.reap()
    assert report.failed == (a.id,)
    assert status(store, b.id) is JobStatus.CANCELLED


def test_released_dependents_go_to_their_priority_and_respect_a_paused_queue(store: JobStore) -> None:
    _, (a, b) = store.submit_flow("t", [node("a"), FlowNode("b", "echo", {}, (Dependency("a"),), priority=9)],
                                  workflow=True)
    store.pause_queue(store.keys.queue_name)
    store.resume_queue(store.keys.queue_name)
    run(store, a.id)
    assert store.redis.lrange(store.keys.waiting(9), 0, -1) == [f'"{b.id}"'.encode()]
    store.redis.delete(store.keys.waiting(9))
    _, (e, f) = store.submit_flow("t", [node("e"), node("f", "e")], workflow=True)
    claimed = [x for x in store.claim(W, 10) if x.id == e.id]
    store.pause_queue(store.keys.queue_name)
    store.finish(W, e.id, claimed[0].attempt, "succeeded", result=Result(b"1", "application/json"))
    assert status(store, f.id) is JobStatus.QUEUED
    assert f'"{f.id}"'.encode() in store.redis.lrange(store.keys.paused(5), 0, -1)
    assert f'"{f.id}"'.encode() not in store.redis.lrange(store.keys.waiting(5), 0, -1)
