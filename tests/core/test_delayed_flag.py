"""The queue control hash's 'delayed' field (issue 16): a claim promotes due delayed jobs (ZRANGEBYSCORE on
the delayed zset) only once the field, a time no later than the zset's earliest due time, is reached; every
writer of the zset (delayed submissions, retries with a delay, workflow nodes with a delay, dependents
released before their run_at) lowers it, the promoting claim moves it to the next due time or drops it,
and the reaper re-flags a zset written by a version of before the field (rolling upgrade). No delayed job
is promoted early or left behind. On the real Redis."""

from __future__ import annotations

import time

from jobs_core.config import Settings
from jobs_core.delivery import Finish
from jobs_core.model import JobError
from jobs_core.store import JobStore
from jobs_core.workflows import Dependency, FlowNode
from support.redis_server import RedisServer

W = "w1"


def flag(store: JobStore) -> float | None:
    raw = store.redis.hget(store.keys.for_queue(store.queues[0]).control, "delayed")
    return None if raw is None else float(raw)


def earliest(store: JobStore) -> float | None:
    first = store.redis.zrange(store.keys.delayed, 0, 0, withscores=True)
    return first[0][1] if first else None


def claim_until(store: JobStore, job_id: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if [c.id for c in store.claim(W, 1)] == [job_id]:
            return
        time.sleep(0.02)
    raise AssertionError(f"{job_id} never claimed: {store.get(job_id).status}")


def test_flag_follows_the_earliest_due_time_and_nothing_is_promoted_early(store: JobStore) -> None:
    """Claims before the due time promote nothing (the job is still delayed), a later submission with an
    earlier due time lowers the field (it is promoted first, not held back by the later one), the promoting
    claim moves the field to the next due time, and it is gone once the zset is empty."""
    assert flag(store) is None
    late, _ = store.enqueue("echo", {}, delay=30)
    assert flag(store) == earliest(store)
    soon, _ = store.enqueue("echo", {}, delay=0.3)
    assert flag(store) == earliest(store) < float(store.redis.zscore(store.keys.delayed, late.id))
    assert store.claim(W, 5) == []  # not due yet: not promoted
    assert store.get(soon.id).status == "queued" and store.counts()["delayed"] == 2
    claim_until(store, soon.id)
    assert flag(store) == float(store.redis.zscore(store.keys.delayed, late.id))  # the next due time
    store.cancel(late.id)  # leaves the field lower than need be: one promotion pass then drops it
    store.redis.hset(store.keys.for_queue(store.queues[0]).control, "delayed", 0)
    assert store.claim(W, 5) == [] and flag(store) is None


def test_a_stale_low_field_promotes_nothing_early(store: JobStore) -> None:
    """The field may be lower than the earliest due time (a cancel, an old worker's promotion): the claim
    then runs the ZRANGEBYSCORE, which still takes only due jobs, and sets the field to the real due time."""
    job, _ = store.enqueue("echo", {}, delay=30)
    store.redis.hset(store.keys.for_queue(store.queues[0]).control, "delayed", 1)
    assert store.claim(W, 5) == []
    assert store.get(job.id).status == "queued" and store.counts()["delayed"] == 1
    assert flag(store) == earliest(store)


def test_a_retry_with_a_delay_flags_the_zset(store: JobStore) -> None:
    job, _ = store.enqueue("echo", {}, max_attempts=3)
    (c,) = store.claim(W, 1)
    store.redis.hdel(store.keys.for_queue(store.queues[0]).control, "delayed")
    statuses, _ = store.finish_and_claim(W, [Finish(job.id, c.attempt, "retry", None, JobError("E", "m"), 0.3)], 0)
    assert statuses == ["queued"]
    assert flag(store) is not None and flag(store) == earliest(store)
    claim_until(store, job.id)
    assert flag(store) is None


def test_workflow_nodes_with_a_delay_flag_the_zset(store: JobStore) -> None:
    """A node queued at submission with a delay, and a dependent released before its run_at (it waits in
    the delayed zset): both lower the field, both are claimed once due."""
    _, jobs = store.submit_flow("t", [FlowNode("a", "echo", delay=0.3),
                                      FlowNode("b", "echo"),
                                      FlowNode("c", "echo", depends_on=(Dependency("b"),), delay=0.6)],
                                workflow=True)
    a, b, c = jobs
    assert flag(store) == earliest(store) == float(store.redis.zscore(store.keys.delayed, a.id))
    (got,) = store.claim(W, 1)
    assert got.id == b.id
    store.redis.hdel(store.keys.for_queue(store.queues[0]).control, "delayed")
    store.finish_and_claim(W, [Finish(b.id, got.attempt, "succeeded")], 0)  # releases c before its run_at
    assert store.get(c.id).status == "queued"
    assert flag(store) is not None and flag(store) <= float(store.redis.zscore(store.keys.delayed, c.id))
    claim_until(store, a.id)
    claim_until(store, c.id)
    assert flag(store) is None and store.counts()["delayed"] == 0


def test_an_entry_without_the_field_is_flagged_by_the_reaper(settings: Settings) -> None:
    """Rolling upgrade: a submitter of the version before the field adds to the delayed zset without it. The
    claims of this version do not see it until the next reaper pass, which re-flags the zset; the job is then
    promoted (at most one reaper interval after it is due), never lost."""
    store = JobStore.from_settings(settings.replace(reaper_interval_seconds=0.01))
    job, _ = store.enqueue("echo", {}, delay=30)
    store.redis.zadd(store.keys.delayed, {job.id: 0})  # as an old submitter: due, and no field
    store.redis.hdel(store.keys.for_queue(store.queues[0]).control, "delayed")
    assert store.claim(W, 1) == []  # not flagged: not looked at yet
    assert store.get(job.id).status == "queued" and store.counts()["delayed"] == 1
    store.reap()
    assert flag(store) == 0
    assert [c.id for c in store.claim(W, 1)] == [job.id]
    assert flag(store) is None


def test_no_delayed_job_costs_claims_no_zrangebyscore(settings: Settings, private_redis: RedisServer) -> None:
    """The point of the field: claims on a queue with no due delayed job run no ZRANGEBYSCORE."""
    store = JobStore.from_settings(settings.replace(redis_url=private_redis.url))
    store.enqueue("echo", {}, delay=30)
    for _ in range(3):
        store.enqueue("echo", {})
    store.redis.config_resetstat()
    for _ in range(4):
        store.claim(W, 1)
    stats = store.redis.info("commandstats")
    assert "cmdstat_zrangebyscore" not in stats
    assert stats["cmdstat_evalsha"]["calls"] >= 4  # the claims ran (before the field: one ZRANGEBYSCORE each)
