"""FINISH_CLAIM's lean queue blocks and claim reads (issue 16, profile 29): the worker's call passes each
queue's keys without the paused lists and the in-flight list (a paused list is named from its prefix when a
job goes back to a paused queue), and a claim reads the fields an earlier attempt may have left only for a
job that ran before."""

from __future__ import annotations

import time
from collections import Counter

import redis
from jobs_core.config import Settings
from jobs_core.keys import Keys
from jobs_core.model import JobError
from jobs_core.store import Finish, JobStore


def _calls(client: redis.Redis) -> Counter[str]:
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()})


def test_the_claim_block_is_the_queue_block_less_the_paused_and_in_flight_lists() -> None:
    k = Keys("p", "q")
    assert len(k.claim_block) == 17 and len(set(k.claim_block)) == 17
    assert set(k.block) - set(k.claim_block) == {*k.paused_lists, k.inflight}
    assert k.claim_block[:10] == list(k.waiting_lists) and k.claim_block_args[:3] == k.block_args
    assert [k.claim_block_args[3] + str(p) for p in range(10)] == [k.paused(p) for p in range(10)]


def test_jobs_going_back_to_a_paused_queue_land_in_its_paused_list_of_their_priority(settings: Settings) -> None:
    """Retries and hand-backs of every priority (and a delayed retry promoted while paused) through
    FINISH_CLAIM, whose blocks name the paused lists from their prefix: each entry is in Keys.paused(p)."""
    store = JobStore.from_settings(settings.replace(lease_seconds=30.0))
    k = store.keys
    ids = {p: store.enqueue("echo", {}, priority=p, max_attempts=5)[0].id for p in range(10)}
    claimed = store.claim("w", 10)
    assert len(claimed) == 10
    store.pause_queue(settings.queue)
    by_id = {c.id: c for c in claimed}
    finishes = [Finish(ids[p], by_id[ids[p]].attempt, "handback" if p % 2 else "retry",
                       error=None if p % 2 else JobError("E", "again")) for p in range(10)]
    statuses, again = store.finish_and_claim("w", finishes, 4)
    assert statuses == ["queued"] * 10 and again == []  # paused: nothing to claim
    for p in range(10):
        assert store.redis.lrange(k.paused(p), 0, -1) == [f'"{ids[p]}"'.encode()], p
        assert store.redis.llen(k.waiting(p)) == 0
    assert not store.redis.exists(k.inflight)
    # a retry with a delay, promoted by a claim once due while the queue is still paused: to its paused list
    store.redis.delete(*(k.paused(p) for p in range(10)))
    store.resume_queue(settings.queue)
    late, _ = store.enqueue("echo", {}, priority=3, max_attempts=5)
    [c] = store.claim("w", 1)
    assert c.id == late.id
    store.pause_queue(settings.queue)
    assert store.finish_and_claim("w", [Finish(c.id, c.attempt, "retry", retry_delay=0.05)], 0)[0] == ["queued"]
    assert store.redis.zscore(k.delayed, late.id) is not None
    time.sleep(0.1)
    assert store.claim("w", 1) == []
    assert store.redis.lrange(k.paused(3), 0, -1) == [f'"{late.id}"'.encode()]
    assert store.redis.zcard(k.delayed) == 0


def test_a_first_claim_reads_no_leftover_fields_and_a_rerun_drops_them(settings: Settings) -> None:
    store = JobStore.from_settings(settings.replace(lease_seconds=30.0))
    client = store.redis
    job, _ = store.enqueue("echo", {})
    before = _calls(client)
    [c] = store.claim("w", 1)
    ran = _calls(client) - before
    assert ran["hdel"] == 0 and ran["hmget"] == 2  # the control hash's, the record's
    assert store.set_progress("w", c.id, c.attempt, 0.5, "half way")
    assert store.finish("w", c.id, c.attempt, "handback") == "queued"
    assert client.hmget(k := store.keys.job(job.id), "progress", "message") == [b"0.5", b"half way"]
    [again] = store.claim("w", 1)
    assert again.id == job.id and client.hmget(k, "progress", "message") == [None, None]
    assert store.get(job.id).status.value == "running"
