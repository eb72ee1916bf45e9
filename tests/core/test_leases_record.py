"""The leases zset is the record of running jobs (issue 16: no claim writes the in-flight list any more),
and FINISH_CLAIM's per-call tallies (one lease ZADD / ZREM per queue, one pending HINCRBY per tenant, one
history HINCRBY per field, one subscription read per tenant) stay exact with mixed tenants and tasks in
one call, also when the call fails half-way. On the real Redis."""

from __future__ import annotations

import json
import random
import time

import pytest
import redis
from jobs_core.browse import history_totals
from jobs_core.config import Settings
from jobs_core.delivery import Finish
from jobs_core.errors import IllegalTransition
from jobs_core.event_stream import job_events
from jobs_core.model import JobError, Result
from jobs_core.store import JobStore
from jobs_core.subscriptions import WebhookSubscriptions

W = "worker-a"
OK = Result(b'"ok"', "application/json")


def leased(store: JobStore) -> set[str]:
    return {m.decode() for m in store.redis.zrange(store.keys.leases, 0, -1)}


def running(store: JobStore, ids: list[str]) -> set[str]:
    pipe = store.redis.pipeline(transaction=False)
    for i in ids:
        pipe.hget(store.keys.job(i), "status")
    return {i for i, st in zip(ids, pipe.execute(), strict=True) if st == b"running"}


def pending(store: JobStore) -> dict[str, int]:
    return {t.decode(): int(v) for t, v in store.redis.hgetall(store.keys.pending).items() if int(v)}


def queued_by_tenant(store: JobStore, ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in ids:
        status, owner = store.redis.hmget(store.keys.job(i), "status", "owner")
        if status == b"queued":
            out[owner.decode()] = out.get(owner.decode(), 0) + 1
    return out


def history(store: JobStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in store.redis.scan_iter(f"{store.keys.for_queue(store.queues[0]).history_prefix}*"):
        for name, n in history_totals({k.decode(): int(v) for k, v in store.redis.hgetall(key).items()}).items():
            out[name] = out.get(name, 0) + n
    return out


def test_leases_are_exactly_the_running_jobs_through_every_transition(settings: Settings) -> None:
    """Property over a random mix of claims (several per call), finishes of every outcome (several per
    call), cancels of queued and running jobs, explicit retries, heartbeats and dead workers reaped: after
    every step the leases zset holds exactly the jobs whose record says running, the old in-flight list
    stays empty, and the pending counts equal the queued jobs per tenant."""
    store = JobStore.from_settings(settings.replace(lease_seconds=0.3, reaper_interval_seconds=0.01))
    rng = random.Random(16)
    tenants = ["t1", "t2", "t3"]
    ids = [store.enqueue("echo", {"i": i}, owner=rng.choice(tenants), max_attempts=3)[0].id for i in range(40)]
    held: dict[str, dict[str, int]] = {"w1": {}, "w2": {}}  # worker -> job id -> attempt
    outcomes = ["succeeded", "failed", "cancelled", "retry", "handback"]
    for step in range(120):
        w = rng.choice(list(held))
        action = rng.random()
        if action < 0.55:
            mine = list(held[w].items())
            rng.shuffle(mine)
            mine = mine[: rng.randint(0, 4)]
            finishes = [Finish(i, a, rng.choice(outcomes), OK, JobError("E", "m")) for i, a in mine]
            statuses, claimed = store.finish_and_claim(w, finishes, rng.randint(0, 4))
            for f, st in zip(finishes, statuses, strict=True):
                del held[w][f.job_id]
                assert st is not None
            for c in claimed:
                held[w][c.id] = c.attempt
        elif action < 0.65:
            try:
                store.cancel(rng.choice(ids))  # queued: cancelled now; running: requested
            except IllegalTransition:  # ended: refused, nothing changed
                pass
        elif action < 0.72:
            try:
                store.retry(rng.choice(ids))
            except IllegalTransition:  # not failed / cancelled: refused, nothing changed
                pass
        elif action < 0.8:
            _, lost = store.heartbeat(w, list(held[w].items()), {}, 10)
            for i in lost:
                held[w].pop(i, None)
        elif action < 0.85 and held[w]:
            held[w] = {}  # the worker dies: its leases expire and the reaper hands the jobs back
            time.sleep(0.35)
            store.reap()  # the other worker's leases have expired too: it lost what the reaper handed back
            for other, jobs in held.items():
                held[other] = {i: a for i, a in jobs.items() if i in running(store, ids)
                               and store.redis.hget(store.keys.job(i), "worker") == other.encode()}
        assert leased(store) == running(store, ids), f"step {step}"
        assert store.redis.llen(store.keys.inflight) == 0
        assert pending(store) == queued_by_tenant(store, ids), f"step {step}"


def test_pending_counts_stay_exact_with_mixed_tenants_in_one_call(store: JobStore) -> None:
    """One claim call takes jobs of three tenants (one HINCRBY per tenant); one finish call ends them
    with mixed outcomes (retries and hand-backs count back as pending) and claims again: exact counts."""
    ids = {t: [store.enqueue("echo", {"t": t, "i": i}, owner=t)[0].id for i in range(3)] for t in ("a", "b", "c")}
    assert pending(store) == {"a": 3, "b": 3, "c": 3}
    claimed = store.claim(W, 7)
    assert len(claimed) == 7
    assert pending(store) == queued_by_tenant(store, [i for v in ids.values() for i in v])
    assert sum(pending(store).values()) == 2
    outcome = {ids["a"][0]: "retry", ids["a"][1]: "handback", ids["b"][0]: "succeeded", ids["b"][1]: "retry",
               ids["a"][2]: "failed", ids["b"][2]: "cancelled", ids["c"][0]: "handback"}
    finishes = [Finish(c.id, c.attempt, outcome[c.id], OK, JobError("E", "m")) for c in claimed]
    statuses, again = store.finish_and_claim(W, finishes, 0)
    assert statuses == [{"retry": "queued", "handback": "queued"}.get(outcome[c.id], outcome[c.id]) for c in claimed]
    assert pending(store) == {"a": 2, "b": 1, "c": 3}
    assert pending(store) == queued_by_tenant(store, [i for v in ids.values() for i in v])
    # the same tenant's job queued again (+1) and claimed (-1) in one call nets out to no command at all
    _, again = store.finish_and_claim(W, [], 10)
    assert len(again) == 6 and pending(store) == {}
    assert leased(store) == {c.id for c in again}


def test_history_counts_stay_exact_with_mixed_tasks_in_one_call(store: JobStore) -> None:
    """Several finishes of two tasks and three statuses in one call (one HINCRBY per distinct history
    field): the per-minute totals count each job once."""
    for i in range(6):
        store.enqueue("echo" if i % 2 else "sleep", {"i": i})
    claimed = store.claim(W, 6)
    plan = ["succeeded", "succeeded", "failed", "succeeded", "cancelled", "failed"]
    store.finish_and_claim(W, [Finish(c.id, c.attempt, o, OK, JobError("E", "m"))
                               for c, o in zip(claimed, plan, strict=True)], 0)
    want: dict[str, int] = {"finished": 6, "failed": 2}
    for c, o in zip(claimed, plan, strict=True):
        want[f"finished:{c.task}"] = want.get(f"finished:{c.task}", 0) + 1
        if o == "failed":
            want[f"failed:{c.task}"] = want.get(f"failed:{c.task}", 0) + 1
    got = history(store)
    assert {k: v for k, v in got.items() if not k.startswith("rt:")} == want
    assert sum(v for k, v in got.items() if k.startswith("rt:")) == 6  # every attempt's run time, once
    for key in store.redis.scan_iter(f"{store.keys.for_queue(store.queues[0]).history_prefix}*"):
        assert store.redis.ttl(key) > 0  # the EXPIRE ran when the fields were created


def test_subscriptions_read_once_per_tenant_still_filter_per_job(store: JobStore) -> None:
    """One finish call ends jobs of two tenants, one subscribed to failures only, one to everything, one
    not at all: the outbox has exactly the events their own filters take."""
    subs = WebhookSubscriptions(store)
    subs.put("fails", "https://hooks.example.com/fails", statuses=["failed"])
    subs.put("all", "https://hooks.example.com/all")
    owners = ["fails", "all", "fails", "none", "all", "fails"]
    for i, o in enumerate(owners):
        store.enqueue("echo", {"i": i}, owner=o)
    claimed = store.claim(W, 6)
    plan = ["failed", "succeeded", "succeeded", "failed", "failed", "failed"]
    store.finish_and_claim(W, [Finish(c.id, c.attempt, o, OK, JobError("E", "m"))
                               for c, o in zip(claimed, plan, strict=True)], 0)
    got = sorted((f[b"job"].decode(), f[b"url"].decode())
                 for _, f in store.redis.xrange(store.keys.webhook_outbox))
    want = sorted((c.id, f"https://hooks.example.com/{c.owner}") for c, o in zip(claimed, plan, strict=True)
                  if c.owner == "all" or (c.owner == "fails" and o == "failed"))
    assert got == want and len(want) == 4


def test_a_claim_that_meets_a_corrupt_record_loses_no_entry(store: JobStore) -> None:
    """An entry popped from the waiting list is held by the script alone: a job whose record cannot be
    claimed (a corrupt attempt log) goes to the dead-letter list, and the claim takes the others."""
    ids = [store.enqueue("echo", {"i": i})[0].id for i in range(3)]
    store.redis.hset(store.keys.job(ids[1]), "attempt_log", "{not json")
    claimed = store.claim(W, 3)
    assert [c.id for c in claimed] == [ids[0], ids[2]]
    assert store.redis.lrange(store.keys.dead_letter, 0, -1) == [json.dumps(ids[1]).encode()]
    assert leased(store) == {ids[0], ids[2]} and pending(store) == {"default": 1}


def test_a_finish_call_that_fails_half_way_keeps_the_finishes_before_it_whole(store: JobStore) -> None:
    """Effects of a script are not rolled back on an error; the tallied writes (lease removal, pending and
    history counts) of the finishes that completed before it are made anyway, as the one-command-per-job
    writes were."""
    ids = [store.enqueue("echo", {"i": i}, owner=f"t{i}")[0].id for i in range(2)]
    a, b = store.claim(W, 2)
    store.redis.hset(store.keys.job(b.id), "attempt_log", "{not json")
    with pytest.raises(redis.ResponseError):
        store.finish_and_claim(W, [Finish(a.id, a.attempt, "retry", error=JobError("E", "m")),
                                   Finish(b.id, b.attempt, "succeeded", OK)], 0)
    assert store.get(a.id).status.value == "queued"
    assert leased(store) == {b.id} == running(store, ids)  # a's lease went with its finish; b still runs
    assert pending(store) == {"t0": 1} == queued_by_tenant(store, ids)
    # and a's change of status is in the event stream (GET /events, the console) like the change itself
    newest = store.redis.xrevrange(store.keys.event_stream, count=1)
    assert [(e["job"], e["status"]) for e in job_events(newest[0][1])] == [(a.id, "queued")]


def test_an_old_workers_inflight_entries_are_still_recovered(settings: Settings) -> None:
    """Rolling upgrade: a worker of the previous version kept its jobs in the in-flight list as well as in
    the leases zset. Written by hand as it did: one job it claimed and died holding (lease expired), one
    entry it moved and died before claiming. The reaper hands both back, once each, and empties the list;
    the new code never writes it again."""
    store = JobStore.from_settings(settings.replace(lease_seconds=0.2, reaper_interval_seconds=0.01))
    r, k = store.redis, store.keys
    held, moved = (store.enqueue("echo", {"i": i})[0].id for i in range(2))
    # the old claim of `held`: LMOVE into inflight, running with a lease (now long expired), pending -1
    assert r.lmove(k.queue, k.inflight, "LEFT", "RIGHT") == json.dumps(held).encode()
    r.hset(k.job(held), mapping={"status": "running", "worker": "old-worker", "attempts": 1, "queue": store.queues[0]})
    r.zadd(k.leases, {held: 0})
    r.hincrby(k.pending, "default", -1)
    # `moved`: taken into inflight, the worker died before its claim script ran
    assert r.lmove(k.queue, k.inflight, "LEFT", "RIGHT") == json.dumps(moved).encode()
    report = store.reap()  # expired lease: `held` queued again; `moved` seen without a lease for the first time
    assert list(report.requeued) == [held]
    time.sleep(0.25)
    report = store.reap()  # past the orphan grace: `moved` back in line
    assert list(report.requeued) == [moved]
    assert r.llen(k.inflight) == 0 and r.zcard(k.leases) == 0
    assert sorted(r.lrange(k.queue, 0, -1)) == sorted(json.dumps(i).encode() for i in (held, moved))  # once each
    claimed = store.claim(W, 5)
    assert sorted(c.id for c in claimed) == sorted([held, moved]) and r.llen(k.inflight) == 0
    assert leased(store) == {held, moved} and pending(store) == {}
