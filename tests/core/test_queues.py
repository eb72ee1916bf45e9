"""Queues, priorities, caps, pause/resume, bulk submit, parking of jobs a worker cannot run, the live
catalogue, on the store against a real Redis (worker processes: tests/worker/test_queue_workers.py)."""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis
from jobs_core.browse import history_totals
from jobs_core.config import Settings
from jobs_core.errors import IdempotencyConflict, QueueFull
from jobs_core.keys import Keys
from jobs_core.model import JobStatus, Submission, TaskInfo
from jobs_core.store import JobStore


def worker_store(settings: Settings, *queues: str, offers: tuple[str, ...] | None = None) -> JobStore:
    store = JobStore.from_settings(settings.replace(queues=queues or (settings.queue,)))
    store.offers = offers
    return store


def test_waiting_list_names_are_the_designed_ones() -> None:
    k = Keys("jobs", "gpu")
    assert k.waiting(5) == k.queue == "hotqueue:gpu" and k.waiting(9) == "hotqueue:gpu:p9"
    assert k.waiting_lists == tuple(["hotqueue:gpu:p9", "hotqueue:gpu:p8", "hotqueue:gpu:p7", "hotqueue:gpu:p6",
                                     "hotqueue:gpu", "hotqueue:gpu:p4", "hotqueue:gpu:p3", "hotqueue:gpu:p2",
                                     "hotqueue:gpu:p1", "hotqueue:gpu:p0"])
    assert len(k.block) == 28 and len(set(k.block)) == 28


def test_jobs_go_to_their_queue_and_priority_list(store: JobStore, namespace: str) -> None:
    a, b = f"{namespace}-a", f"{namespace}-b"
    ja, _ = store.enqueue("echo", {}, queue=a)
    jb, _ = store.enqueue("echo", {}, queue=b, priority=9)
    r = store.redis
    assert r.lrange(f"hotqueue:{a}", 0, -1) == [f'"{ja.id}"'.encode()]
    assert r.lrange(f"hotqueue:{b}:p9", 0, -1) == [f'"{jb.id}"'.encode()]
    assert (store.get(ja.id).queue, store.get(jb.id).priority) == (a, 9)
    with pytest.raises(ValueError):
        store.enqueue("echo", {}, priority=10)


def test_a_worker_on_a_b_takes_a_first(settings: Settings, namespace: str) -> None:
    a, b = f"{namespace}-a", f"{namespace}-b"
    producer = JobStore.from_settings(settings)
    jb = [producer.enqueue("echo", {}, queue=b, priority=9)[0].id for _ in range(2)]
    ja = [producer.enqueue("echo", {}, queue=a, priority=0)[0].id for _ in range(2)]
    w = worker_store(settings, a, b)
    assert [c.id for c in w.claim("w", 3)] == [*ja, jb[0]]  # strict: a even at a lower priority
    assert [c.queue for c in w.claim("w", 3)] == [b]


def test_a_claim_across_queues_fills_every_free_slot(settings: Settings, namespace: str) -> None:
    """Regression: the claim counted 7 fields per claimed job after an 8th joined, so a worker with 8
    free slots got only 7 jobs when the first queue held 7 and the second more."""
    a, b = f"{namespace}-a", f"{namespace}-b"
    producer = JobStore.from_settings(settings)
    ja = [producer.enqueue("echo", {}, queue=a)[0].id for _ in range(7)]
    jb = [producer.enqueue("echo", {}, queue=b)[0].id for _ in range(3)]
    w = worker_store(settings, a, b)
    assert [c.id for c in w.claim("w", 8)] == [*ja, jb[0]]


def test_wake_tokens_come_with_work_in_an_empty_list_and_the_claim_after_a_wait_passes_them_on(
    settings: Settings, namespace: str
) -> None:
    """A submission wakes an idle worker only when it put work into an empty list (one LLEN less per job
    while a queue is backed up, issue 16). Only a worker's wait takes a token, so only the claim that follows
    a wait passes one on when it fills up (to its own queue's work left and to the later queues it did not
    reach: the token may have been theirs); a busy worker's claim took none and wakes nobody (one LLEN less
    per call, profile 20)."""
    a, b = f"{namespace}-a", f"{namespace}-b"
    producer = JobStore.from_settings(settings)
    r = producer.redis
    ka, kb = producer.keys.for_queue(a), producer.keys.for_queue(b)
    producer.enqueue("echo", {}, queue=b)
    assert r.llen(kb.wake) == 1
    assert r.blpop([ka.wake, kb.wake], 1) is not None  # an idle worker takes b's token ...
    producer.enqueue("echo", {}, queue=b)  # b's list was not empty: no new token
    assert r.llen(kb.wake) == 0
    busy = worker_store(settings, b)
    assert len(busy.claim("v", 1)) == 1  # a busy worker's claim fills up with work left: it took no token,
    assert r.llen(kb.wake) == 0  # so it passes none on (the idle worker that took it is about to claim)
    producer.enqueue("echo", {}, queue=a)
    assert r.llen(ka.wake) == 1
    w = worker_store(settings, a, b)
    # its wait takes a's token and its claim fills up on a: b's work gets a token again
    assert [c.queue for c in w.wait_and_claim("w", 1, 1)] == [a]
    assert r.llen(kb.wake) == 1
    other = worker_store(settings, b)
    assert other.redis.blpop([kb.wake], 1) is not None and len(other.claim("u", 5)) == 1
    assert r.llen(ka.wake) == 0  # w's claim took a's only job: no token for a's empty lists


def test_a_full_claim_after_a_wait_passes_a_token_on_only_for_work_left(settings: Settings, namespace: str) -> None:
    """Profile 26: a 1-slot worker's claim after its wait is always full. It passed a token on every time,
    so, idle again after the job, its next wait returned at once on that token and its claim found nothing
    (one BLPOP and one claim more per job, and a pause that made the 1-slot round trip ~27 ms). The claim now
    passes a token on only when a waiting list or the parked set still holds work."""
    a, b = f"{namespace}-a", f"{namespace}-b"
    producer = JobStore.from_settings(settings)
    r = producer.redis
    ka, kb = producer.keys.for_queue(a), producer.keys.for_queue(b)
    one = worker_store(settings, a, b)
    producer.enqueue("echo", {}, queue=a)
    assert [c.queue for c in one.wait_and_claim("w", 1, 1)] == [a]  # took the token and the only job
    assert r.llen(ka.wake) == 0 and r.llen(kb.wake) == 0  # nothing left: no token for anyone
    # work left behind, at another priority: a token for the next idle worker
    producer.enqueue("echo", {}, queue=a)
    producer.enqueue("echo", {}, queue=a, priority=0)
    assert len(one.wait_and_claim("w", 1, 1)) == 1
    assert r.llen(ka.wake) == 1
    assert len(one.wait_and_claim("w", 1, 1)) == 1 and r.llen(ka.wake) == 0  # the last one: none
    # parked jobs: work left for a worker that offers their task, not for one that lacks it (they got a
    # token when parked)
    echo_only = worker_store(settings, a, offers=("echo",))
    both = worker_store(settings, a, offers=("echo", "newtask"))
    producer.enqueue("newtask", {}, queue=a)
    producer.enqueue("newtask", {}, queue=a)
    assert echo_only.claim("v", 1) == [] and r.scard(ka.parked) == 1  # parked, with a token
    r.delete(ka.wake)  # taken by an idle worker
    producer.enqueue("echo", {}, queue=a)
    assert [c.task for c in echo_only.wait_and_claim("w", 1, 1)] == ["echo"]
    assert r.llen(ka.wake) == 0
    r.rpush(ka.wake, "1")
    assert [c.task for c in both.wait_and_claim("w", 1, 1)] == ["newtask"]  # one of two parked
    assert r.llen(ka.wake) == 1


def test_priorities_in_order_fifo_within_also_after_hand_back_and_reap(settings: Settings) -> None:
    store = JobStore.from_settings(settings.replace(lease_seconds=0.2, reaper_interval_seconds=0.01))
    order = [5, 9, 0, 5, 9, 0, 5]
    jobs = [store.enqueue("echo", {"i": i}, priority=p)[0] for i, p in enumerate(order)]
    expected = [j.id for p in (9, 5, 0) for j in jobs if j.priority == p]
    first = store.claim("w", 1)[0]
    assert first.id == expected[0]
    assert store.finish("w", first.id, first.attempt, "handback") == "queued"
    # handed back: it keeps its place, ahead of the other priority-9 job queued after it
    second = store.claim("w", 1)[0]
    assert second.id == expected[0] and second.attempt == 1
    time.sleep(0.25)  # the lease expires: the reaper puts it back at the front too
    assert expected[0] in store.reap().requeued
    assert [c.id for c in store.claim("w", 10)] == expected


def test_the_offered_tasks_are_matched_by_whole_name(settings: Settings) -> None:
    """The claim looks a plain task name up in the offered names' JSON text instead of decoding it (profile
    20): only a whole element matches, never a part of another name (an escaped quote, a prefix, a name
    ending in a comma); other names are decoded as before."""
    producer = JobStore.from_settings(settings)
    tasks = ["echo", "ech", "cho", "a,", 'x"echo', "b]", "ok-1.v2:x/y"]
    ids = {t: producer.enqueue(t, {})[0].id for t in tasks}
    worker = worker_store(settings, offers=('x"echo', "a,", "b]", "echoes", "ok-1.v2:x/y"))
    claimed = {c.task for c in worker.claim("w", 10)}
    assert claimed == {"a,", 'x"echo', "b]", "ok-1.v2:x/y"}
    assert all(producer.get(ids[t]).status is JobStatus.QUEUED for t in ("echo", "ech", "cho"))  # parked
    assert {c.task for c in worker_store(settings, offers=("echo", "cho")).claim("v", 10)} == {"echo", "cho"}


def test_parked_jobs_are_never_run_by_a_worker_lacking_their_task(settings: Settings) -> None:
    producer = JobStore.from_settings(settings)
    new = [producer.enqueue("newtask", {})[0].id for _ in range(3)]
    old_job, _ = producer.enqueue("echo", {})
    old = worker_store(settings, offers=("echo",))
    claimed = old.claim("old", 10)
    assert [c.id for c in claimed] == [old_job.id]  # the other three were set aside, not failed
    assert old.claim("old", 10) == []  # and not taken again (no hot loop)
    assert producer.counts()["unrunnable"] == 3 and producer.counts()["queued"] == 0
    assert all(producer.get(i).status is JobStatus.QUEUED and producer.get(i).attempts == 0 for i in new)
    later, _ = producer.enqueue("echo", {})
    new_worker = worker_store(settings, offers=("echo", "newtask"))
    got = [c.id for c in new_worker.claim("new", 10)]
    assert got == [*new, later.id]  # parked jobs first: they were at the head of the line
    assert producer.counts()["unrunnable"] == 0


def test_the_control_flags_claims_read_follow_the_parked_set_and_the_reaper_corrects_them(settings: Settings) -> None:
    """Claims look at the parked set and the orphans zset only while the queue's control hash flags them
    (an EXISTS each per claim saved, issue 16): parking sets the flag, emptying the set clears it, and the
    reaper's pass sets it for a set filled without one (a worker of before the flags, mid rolling upgrade)."""
    producer = JobStore.from_settings(settings)
    k = producer.keys
    job, _ = producer.enqueue("newtask", {})
    assert worker_store(settings, offers=("echo",)).claim("old", 1) == []  # parked
    assert producer.redis.hget(k.control, "parked") == b"1"
    assert [c.id for c in worker_store(settings).claim("new", 5)] == [job.id]
    assert producer.redis.hget(k.control, "parked") is None  # the set emptied with that claim
    # parked the way a worker of before the flags did it: no flag; the next reaper pass sets it
    other, _ = producer.enqueue("newtask", {})
    producer.redis.lrem(k.queue, 1, f'"{other.id}"')
    producer.redis.rpush(k.parked_list("newtask"), f'"{other.id}"')
    producer.redis.sadd(k.parked, "newtask")
    assert worker_store(settings).claim("new", 5) == []  # not flagged: not looked at yet
    assert producer.reap(token="t1").ran
    assert producer.redis.hget(k.control, "parked") == b"1"
    assert [c.id for c in worker_store(settings).claim("new", 5)] == [other.id]
    # a stale flag (nothing left to look at) is cleared by the next pass
    producer.redis.hset(k.control, mapping={"parked": "1", "orphans": "1"})
    producer.redis.delete(k.reaper_lock)
    assert producer.reap(token="t2").ran
    assert producer.redis.hmget(k.control, "parked", "orphans") == [None, None]


def test_cancel_reaches_a_parked_or_paused_job(settings: Settings) -> None:
    producer = JobStore.from_settings(settings)
    parked, _ = producer.enqueue("newtask", {})
    worker_store(settings, offers=("echo",)).claim("w", 1)
    assert producer.cancel(parked.id).status is JobStatus.CANCELLED
    producer.pause_queue(settings.queue)
    paused, _ = producer.enqueue("echo", {}, priority=7)
    assert producer.cancel(paused.id).status is JobStatus.CANCELLED
    counts = producer.counts()
    assert counts["unrunnable"] == counts["paused"] == counts["queued"] == 0


def test_pause_hides_waiting_work_from_keda_and_resume_keeps_order(settings: Settings) -> None:
    store = JobStore.from_settings(settings)
    k, q = store.keys, settings.queue
    before = [store.enqueue("echo", {}, priority=p)[0].id for p in (5, 9, 5)]
    assert store.pause_queue(q) and not store.pause_queue(q)
    during = [store.enqueue("echo", {}, priority=p)[0].id for p in (5, 9)]
    assert sum(store.redis.llen(name) for name in k.waiting_lists) == 0  # what KEDA counts
    assert store.claim("w", 10) == []
    stats = store.queue_stats(q)
    assert stats.paused and stats.waiting == 5 and stats.waiting_by_priority[9] == 2
    assert store.resume_queue(q) and not store.resume_queue(q)
    assert [c.id for c in store.claim("w", 10)] == [before[1], during[1], before[0], before[2], during[0]]


def test_handback_into_a_paused_queue_stays_paused(settings: Settings) -> None:
    store = JobStore.from_settings(settings)
    store.enqueue("echo", {})
    [c] = store.claim("w", 1)
    store.pause_queue(settings.queue)
    assert store.finish("w", c.id, c.attempt, "handback") == "queued"
    assert store.redis.llen(store.keys.queue) == 0 and store.queue_stats(settings.queue).waiting == 1


def test_cap_is_enforced_at_claim_and_freed_by_lease_expiry(settings: Settings) -> None:
    store = JobStore.from_settings(settings.replace(lease_seconds=0.3, reaper_interval_seconds=0.01))
    for _ in range(5):
        store.enqueue("echo", {})
    store.set_queue_cap(settings.queue, 2)
    dead = store.claim("dead-worker", 5)
    assert len(dead) == 2 and store.claim("other", 5) == []
    assert store.queue_stats(settings.queue).cap == 2
    time.sleep(0.35)  # the dead worker never heartbeats: its leases expire, the reaper frees the slots
    store.reap()
    assert len(store.claim("other", 5)) == 2
    store.set_queue_cap(settings.queue, None)
    assert len(store.claim("other", 5)) == 3


def test_cap_never_exceeded_by_competing_claimers(settings: Settings) -> None:
    """Property: with many threads claiming, finishing and dying (leases left to expire) at random, the
    number of jobs of the queue running never exceeds the cap."""
    cap, total = 3, 120
    fast = settings.replace(lease_seconds=0.3, reaper_interval_seconds=0.05)
    producer = JobStore.from_settings(fast)
    producer.set_queue_cap(settings.queue, cap)
    ids = [producer.enqueue("echo", {}, priority=random.randint(0, 9), max_attempts=50)[0].id for _ in range(total)]
    stop = threading.Event()
    worst = [0]
    errors: list[BaseException] = []

    def watch() -> None:
        watcher = JobStore.from_settings(fast)
        while not stop.is_set():
            snapshot = watcher.redis.pipeline(transaction=True)  # MULTI: one consistent view of every job
            for i in ids:
                snapshot.hget(watcher.keys.job(i), "status")
            running = sum(1 for s in snapshot.execute() if s == b"running")
            worst[0] = max(worst[0], running)

    def work(n: int) -> None:
        try:
            store = JobStore.from_settings(fast)
            rng = random.Random(n)
            while not stop.is_set():
                store.reap()
                for c in store.claim(f"w{n}", rng.randint(1, 3)):
                    if rng.random() < 0.1:
                        continue  # this "worker" dies holding the job: only its lease frees the slot
                    time.sleep(rng.random() * 0.01)
                    store.finish(f"w{n}", c.id, c.attempt, "succeeded")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=watch)] + [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(j.status is JobStatus.SUCCEEDED for j in producer.get_many(ids)):
            break
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert all(j.status is JobStatus.SUCCEEDED for j in producer.get_many(ids)), "the cap leaked slots"
    assert 0 < worst[0] <= cap


def test_enqueue_many_is_all_or_nothing(store: JobStore, settings: Settings, namespace: str) -> None:
    other = f"{namespace}-b"
    items = [Submission("echo", {"i": i}, priority=i % 10) for i in range(5)] + [Submission("echo", {}, queue=other)]
    jobs, created = store.enqueue_many(items, owner="acme")
    assert created and len(jobs) == 6 and len({j.seq for j in jobs}) == 6
    assert [store.get(j.id).priority for j in jobs] == [0, 1, 2, 3, 4, 5]
    assert store.get(jobs[-1].id).queue == other
    with pytest.raises(QueueFull):
        store.enqueue_many([Submission("echo", {})] * 5, owner="acme", max_pending_per_tenant=10)
    with pytest.raises(QueueFull):
        store.enqueue_many([Submission("echo", {})] * 2, owner="zed", max_pending=6)
    assert store.counts()["queued"] == 6  # refused batches left nothing behind


def test_enqueue_many_idempotency(store: JobStore) -> None:
    items = [Submission("echo", {"i": i}) for i in range(3)]
    first, created = store.enqueue_many(items, owner="acme", idempotency_key="batch-1")
    again, created_again = store.enqueue_many(items, owner="acme", idempotency_key="batch-1")
    assert created and not created_again and [j.id for j in again] == [j.id for j in first]
    with pytest.raises(IdempotencyConflict):
        store.enqueue_many(items[:2], owner="acme", idempotency_key="batch-1")
    assert store.counts()["queued"] == 3


def test_enqueue_many_survives_a_redis_crash_whole_or_not_at_all(private_redis: object, settings: Settings) -> None:
    from support.redis_server import RedisServer

    assert isinstance(private_redis, RedisServer)
    store = JobStore.from_settings(settings.replace(redis_url=private_redis.url))
    n = 3000
    done = threading.Event()

    def submit() -> None:
        try:
            store.enqueue_many([Submission("echo", {"i": i}) for i in range(n)], owner="acme")
        except Exception:
            pass
        done.set()

    t = threading.Thread(target=submit)
    t.start()
    time.sleep(random.random() * 0.05)
    private_redis.kill()
    t.join(30)
    private_redis.start()
    after = JobStore.from_settings(settings.replace(redis_url=private_redis.url))
    queued = after.redis.llen(after.keys.queue)
    records = sum(1 for _ in after.redis.scan_iter(after.keys.job_prefix + "*", count=1000))
    assert (queued, records) in ((0, 0), (n, n)), f"half a batch survived: {queued} queued, {records} records"


def test_history_counters_and_queue_stats(settings: Settings) -> None:
    store = JobStore.from_settings(settings)
    for _ in range(3):
        store.enqueue("echo", {})
    a, b, _running = store.claim("w", 3)
    store.finish("w", a.id, a.attempt, "succeeded")
    store.finish("w", b.id, b.attempt, "failed")
    stats = store.queue_stats(settings.queue)
    assert (stats.finished_last_minute, stats.failed_last_minute, stats.running) == (2, 1, 1)
    minute = int(store.redis.time()[0]) // 60
    # stored as one field per status, run-time bucket and task (one HINCRBY per finish), summed on read
    hist = {f.decode().rsplit(":", 2)[0]: v for f, v in store.redis.hgetall(store.keys.history(minute)).items()}
    assert hist == {"j:succeeded": b"1", "j:failed": b"1"}  # (the bucket of a no-op run: 0)
    totals = {f: v for f, v in store.history(settings.queue, 1)[-1].items() if not f.startswith("rt:")}
    assert totals == {"finished": 2, "failed": 1, "finished:echo": 2, "failed:echo": 1}
    assert 0 < store.redis.ttl(store.keys.history(minute)) <= settings.history_seconds
    store.enqueue("echo", {}, priority=8)
    stats = store.queue_stats(settings.queue)
    assert stats.waiting_by_priority[8] == 1 and stats.oldest_waiting_age_seconds is not None
    assert settings.queue in store.queue_names()


def test_history_of_a_rolling_upgrade_sums_both_layouts(settings: Settings) -> None:
    """A minute written partly by workers of before issue 16 (four counters per finish) and partly by
    today's (one composite field) reads as the sum of both, in the queue stats and the console's history."""
    store = JobStore.from_settings(settings)
    store.enqueue("echo", {})
    (job,) = store.claim("w", 1)
    minute = int(store.redis.time()[0]) // 60
    store.redis.hset(store.keys.history(minute), mapping={"finished": 3, "failed": 1, "finished:echo": 2,
                                                           "failed:echo": 1, "finished:mail": 1})
    store.finish("w", job.id, job.attempt, "cancelled")
    totals = {f: v for f, v in store.history(settings.queue, 1)[-1].items() if not f.startswith("rt:")}
    assert totals == {"finished": 4, "failed": 1, "finished:echo": 3, "failed:echo": 1, "finished:mail": 1}
    stats = store.queue_stats(settings.queue)
    assert (stats.finished_last_minute, stats.failed_last_minute) == (4, 1)


def test_catalogue_shows_live_workers_conflicts_and_retires_stale_tasks(settings: Settings, namespace: str) -> None:
    store = JobStore.from_settings(settings.replace(task_retention_seconds=1))
    store.publish_tasks([TaskInfo("render", queue=f"{namespace}-gpu"), TaskInfo("mail")])
    status = {"id": "w1", "queues": [f"{namespace}-gpu"], "tasks": {"render": f"{namespace}-gpu"}}
    store.heartbeat("w1", [], status, 5)
    tasks = store.task_statuses()
    assert tasks["render"].live and tasks["render"].workers == 1 and not tasks["mail"].live
    assert tasks["mail"].info.queue == settings.queue  # no queue declared: the default queue
    store.heartbeat("w2", [], {"id": "w2", "queues": ["cpu"], "tasks": {"render": "cpu"}}, 5)
    conflicts = store.publish_tasks([TaskInfo("render", queue="cpu")])
    assert conflicts and store.task_statuses()["render"].queue_conflict == ["cpu", f"{namespace}-gpu"]
    assert store.retire_stale_tasks() == []  # mail's clock starts now
    time.sleep(1.2)
    assert store.retire_stale_tasks() == ["mail"] and "mail" not in store.tasks()
    assert store.retire_task("render") and not store.retire_task("render")


@pytest.mark.parametrize("pipelined", [False, True])
def test_an_idle_worker_blocked_on_its_wake_list_survives_a_demoted_primary(store: JobStore, pipelined: bool) -> None:
    """Found by the failover scenario in CI: when Sentinel demotes the primary, Redis/Valkey unblock BLPOP
    with ``-UNBLOCKED ...`` (a ResponseError, not a connection error), which killed the idle worker. The
    same reply comes from ``CLIENT UNBLOCK <id> ERROR``: the wait must end as "look for work" instead
    (the worker's wait_and_claim: its pipelined claim ran, and found nothing here)."""
    out: list[object] = []

    def wait() -> None:
        try:
            out.append(bool(store.wait_and_claim("w", 1, 10) == []) if pipelined else store.wait_for_work(10))
        except Exception as e:  # the assertion below shows it
            out.append(e)

    admin = redis.Redis.from_url(store.settings.redis_url)  # its own connection, never the wait's
    before = {c["id"] for c in admin.client_list()}
    blocked = threading.Thread(target=wait)
    blocked.start()
    deadline = time.monotonic() + 5
    client_id = None
    while client_id is None and time.monotonic() < deadline:  # the wait's connection, once it blocks
        new = [c["id"] for c in admin.client_list() if c["id"] not in before and c.get("cmd") == "blpop"]
        client_id = new[0] if new else None
        time.sleep(0.05)
    assert client_id is not None, "the wait never blocked"
    admin.execute_command("CLIENT", "UNBLOCK", client_id, "ERROR")
    blocked.join(5)
    assert out == [True], out


def test_an_idle_wait_claims_the_moment_work_arrives_and_after_a_timeout_too(store: JobStore) -> None:
    """wait_and_claim (issue 16, round trip): the claim is pipelined behind the blocking wait, so a job
    submitted during the wait comes back from the one call; with no work the call returns empty once the
    wait times out (the claim still ran: the idle loop's look for work, e.g. promoting due delayed jobs)."""
    assert store.wait_and_claim("w", 2, 0.2) == []
    out: list[object] = []
    waiting = threading.Thread(target=lambda: out.append(store.wait_and_claim("w", 2, 10)))
    waiting.start()
    time.sleep(0.2)
    job, _ = store.enqueue("echo", {})
    waiting.join(10)
    assert [[c.id for c in got] for got in out if isinstance(got, list)] == [[job.id]], out
    assert store.get(job.id).status is JobStatus.RUNNING
    delayed, _ = store.enqueue("echo", {}, delay=0.1)
    time.sleep(0.15)
    assert [c.id for c in store.wait_and_claim("w", 2, 0.1)] == [delayed.id]  # no token: found by the claim


def test_an_idle_wait_whose_script_is_not_cached_still_claims(private_redis: object, settings: Settings) -> None:
    """A Redis with an empty script cache (restarted, or a promoted replica) answers the pipelined claim
    NOSCRIPT: the job must still be claimed, by the ordinary call that loads the script."""
    from support.redis_server import RedisServer

    assert isinstance(private_redis, RedisServer)
    store = JobStore.from_settings(settings.replace(redis_url=private_redis.url))
    job, _ = store.enqueue("echo", {})
    store.redis.script_flush()
    assert [c.id for c in store.wait_and_claim("w", 1, 1)] == [job.id]


def test_run_time_histogram_lands_in_the_attempts_bucket_with_the_history_ttl(settings: Settings) -> None:
    """Each job that ends adds one to ``rt:<task>:<bucket>`` of its minute's history hash: the bucket of
    its attempt's run time (claim to outcome, as the attempt log records it); the hash keeps its TTL."""
    from jobs_core import histogram

    store = JobStore.from_settings(settings)
    for _ in range(3):
        store.enqueue("echo", {})
    a, b, c = store.claim("w", 3)
    store.finish("w", a.id, a.attempt, "succeeded")
    time.sleep(0.25)
    store.finish("w", b.id, b.attempt, "failed")
    store.finish("w", c.id, c.attempt, "retry")  # queued again: no outcome yet, nothing counted
    expected: dict[str, int] = {}
    for job_id in (a.id, b.id):
        (attempt,) = store.attempt_log(job_id)
        field = f"rt:echo:{histogram.bucket(attempt['end'] - attempt['start'])}"
        expected[field] = expected.get(field, 0) + 1
        minute = attempt["end"] // 60000
        assert 0 < store.redis.ttl(store.keys.history(minute)) <= settings.history_seconds
    found: dict[str, int] = {}
    for minute in {store.attempt_log(j)[0]["end"] // 60000 for j in (a.id, b.id)}:
        # stored with the status in one field per finish (one HINCRBY), read as rt:<task>:<bucket>
        raw = {f.decode(): int(v) for f, v in store.redis.hgetall(store.keys.history(minute)).items()}
        for f, v in history_totals(raw).items():
            if f.startswith("rt:"):
                found[f] = found.get(f, 0) + v
    assert found == expected
    slow = store.attempt_log(b.id)[0]
    ran = slow["end"] - slow["start"]
    assert ran >= 250 and histogram.bounds(histogram.bucket(ran))[1] > 250
    rt = store.task_run_time("echo", [settings.queue])
    assert rt["hour"]["count"] == rt["day"]["count"] == 2
    assert rt["hour"]["p99_ms"] >= 250 / (1 + histogram.RELATIVE_ERROR)
    assert store.queue_run_time(settings.queue)["tasks"]["echo"] == rt


def test_histogram_buckets_and_percentiles_keep_the_documented_error_bound() -> None:
    from jobs_core import histogram

    for ms in [1, 1.5, 2, 3, 10, 99, 100, 101, 999, 1000, 60_000, 3_600_000, 86_400_000]:
        b = histogram.bucket(ms)
        low, high = histogram.bounds(b)
        assert low <= ms < high, (ms, b, low, high)
        assert abs(histogram.estimate(b) - ms) / ms <= histogram.RELATIVE_ERROR + 1e-12
    assert histogram.bucket(0) == histogram.bucket(0.4) == 0
    counts = {histogram.bucket(10): 90, histogram.bucket(500): 9, histogram.bucket(5000): 1}
    got = histogram.percentiles(counts)
    assert got["count"] == 100
    assert abs(got["p50_ms"] - 10) / 10 <= histogram.RELATIVE_ERROR
    assert abs(got["p95_ms"] - 500) / 500 <= histogram.RELATIVE_ERROR
    assert abs(got["p99_ms"] - 500) / 500 <= histogram.RELATIVE_ERROR  # rank 99 of 100 is the 99th, a 500
    assert histogram.percentiles({}) == {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
