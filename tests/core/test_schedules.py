"""Schedules on the real Redis: definition, catch-up and overlap policies, and exactly-once ticks with
many ticker processes racing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from jobs_core.config import Settings
from jobs_core.errors import InvalidSchedule, ScheduleLimit, ScheduleNotFound
from jobs_core.model import JobStatus
from jobs_core.schedules import CatchUp, Overlap, ScheduleSpec, tick_job_id
from jobs_core.store import JobStore
from jobs_core.ticker import tick_once
from support.procs import service_env, stop, wait_for

EVERY_SECOND = "* * * * * *"


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def scheduled_jobs(store: JobStore, owner: str = "default") -> list[tuple[int, str]]:
    """(tick, job id) of every job the schedules created, from the tenant's index."""
    ids = [x.decode() for x in store.redis.zrange(store.keys.owner_index(owner), 0, -1)]
    out = []
    for job_id in ids:
        tick = store.redis.hget(store.keys.job(job_id), "tick")
        if tick is not None:
            out.append((int(tick), job_id))
    return sorted(out)


def queue_entries(store: JobStore) -> list[str]:
    return [x.decode().strip('"') for x in store.redis.lrange(store.keys.queue, 0, -1)]


# ----------------------------------------------------------------------------------------- the plan
def test_plan_catch_up_policies_after_an_outage() -> None:
    every_minute = {"task": "echo", "cron": "* * * * *", "catchup_window": 600}
    last = ms(2026, 1, 1, 12, 0)
    now = ms(2026, 1, 1, 12, 5, 30)  # 12:01 .. 12:05 missed
    ticks = [ms(2026, 1, 1, 12, m) for m in range(1, 6)]
    plan_all = ScheduleSpec.from_dict({**every_minute, "catchup": "all"}).plan(last, now, 10_000)
    assert plan_all.fire == ticks and plan_all.cursor == ticks[-1] and plan_all.next_due == ms(2026, 1, 1, 12, 6)
    plan_one = ScheduleSpec.from_dict({**every_minute, "catchup": "one"}).plan(last, now, 10_000)
    assert plan_one.fire == ticks[-1:] and plan_one.passed == 4 and plan_one.cursor == ticks[-1]
    plan_skip = ScheduleSpec.from_dict({**every_minute, "catchup": "skip"}).plan(last, now, 10_000)
    assert plan_skip.fire == [] and plan_skip.passed == 5 and plan_skip.cursor == ticks[-1]
    # on time (within the grace period), skip fires the tick
    on_time = ScheduleSpec.from_dict({**every_minute, "catchup": "skip"}).plan(last, ticks[0] + 500, 10_000)
    assert on_time.fire == [ticks[0]]


def test_plan_window_bounds_catch_up() -> None:
    spec = ScheduleSpec.from_dict({"task": "echo", "cron": "* * * * *", "catchup": "all", "catchup_window": 120})
    now = ms(2026, 1, 1, 12, 10, 30)
    plan = spec.plan(ms(2026, 1, 1, 11, 0), now, 0)
    assert plan.fire == [ms(2026, 1, 1, 12, 9), ms(2026, 1, 1, 12, 10)]


def test_plan_evaluates_in_the_schedules_time_zone() -> None:
    spec = ScheduleSpec.from_dict({"task": "echo", "cron": "0 9 * * *", "timezone": "Europe/Paris"})
    # 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer
    assert spec.next_tick(ms(2026, 1, 10)) == ms(2026, 1, 10, 8)
    assert spec.next_tick(ms(2026, 7, 10)) == ms(2026, 7, 10, 7)


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [("cron", "61 * * * *", "/cron"), ("cron", "* * *", "/cron"), ("cron", "* * * * * * *", "/cron"),
     ("timezone", "Mars/Olympus", "/timezone"), ("timezone", "../../etc/passwd", "/timezone"),
     ("catchup_window", 0, "/catchup_window")],
)
def test_invalid_definitions_name_the_field(field: str, value: object, path: str) -> None:
    spec = ScheduleSpec.from_dict({"task": "echo", "cron": "* * * * *", field: value})
    with pytest.raises(InvalidSchedule) as e:
        spec.validate()
    assert [p for p, _ in e.value.errors] == [path]


# ------------------------------------------------------------------------------------------ storage
def test_put_is_idempotent_and_a_change_bumps_the_version(store: JobStore) -> None:
    spec = ScheduleSpec(task="echo", cron="*/5 * * * *", params={"a": 1})
    sched, outcome = store.put_schedule("acme", "nightly", spec)
    assert outcome == "created" and sched.version == 1 and not sched.paused
    assert store.put_schedule("acme", "nightly", spec)[1] == "unchanged"
    changed, outcome = store.put_schedule("acme", "nightly", ScheduleSpec(task="echo", cron="0 * * * *"))
    assert outcome == "updated" and changed.version == 2 and changed.spec.cron == "0 * * * *"
    assert [s.name for s in store.list_schedules("acme")] == ["nightly"]
    assert store.list_schedules("other") == []
    with pytest.raises(ScheduleNotFound):
        store.get_schedule("other", "nightly")
    view = changed.to_dict(store.redis_now_ms())
    assert len(view["next_runs"]) == 5 and view["last_tick"] is None
    store.delete_schedule("acme", "nightly")
    with pytest.raises(ScheduleNotFound):
        store.delete_schedule("acme", "nightly")
    assert store.redis.zcard(store.keys.schedules_due) == 0


def test_tenant_schedule_cap(store: JobStore) -> None:
    spec = ScheduleSpec(task="echo", cron="* * * * *")
    store.put_schedule("t", "a", spec, max_per_tenant=2)
    store.put_schedule("t", "b", spec, max_per_tenant=2)
    with pytest.raises(ScheduleLimit):
        store.put_schedule("t", "c", spec, max_per_tenant=2)
    store.put_schedule("t", "b", ScheduleSpec(task="echo", cron="0 * * * *"), max_per_tenant=2)  # replace: ok


def test_fire_enqueues_each_tick_once_with_derived_ids(store: JobStore) -> None:
    store.put_schedule("default", "s", ScheduleSpec(task="echo", cron=EVERY_SECOND, catchup=CatchUp.ALL))
    created = store.get_schedule("default", "s").created_at
    fired: list[str] = []
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        fired += tick_once(store, grace_ms=1000)
        time.sleep(0.05)
    jobs = scheduled_jobs(store)
    assert len(jobs) >= 2
    ticks = [t for t, _ in jobs]
    assert all(t > created for t in ticks) and ticks == list(range(ticks[0], ticks[-1] + 1, 1000))
    assert sorted(fired) == sorted(j for _, j in jobs)
    assert all(j == tick_job_id(store.keys.prefix, "default", "s", t) for t, j in jobs)
    assert sorted(queue_entries(store)) == sorted(fired)
    sched = store.get_schedule("default", "s")
    assert sched.fired == len(jobs) and sched.last_tick == ticks[-1] and sched.last_job == jobs[-1][1]
    job = store.get(jobs[0][1])
    assert job.status is JobStatus.QUEUED and job.task == "echo"


def test_paused_schedule_fires_nothing_and_resume_does_not_catch_up(store: JobStore) -> None:
    store.put_schedule("default", "s", ScheduleSpec(task="echo", cron=EVERY_SECOND, catchup=CatchUp.ALL))
    store.set_schedule_paused("default", "s", True)
    time.sleep(2.2)
    assert tick_once(store, 1000) == []
    resumed = store.set_schedule_paused("default", "s", False)
    assert not resumed.paused
    time.sleep(1.1)
    tick_once(store, 1000)
    ticks = [t for t, _ in scheduled_jobs(store)]
    assert ticks and all(t > resumed.updated_at for t in ticks)


def test_overlap_skip_waits_for_the_previous_run(store: JobStore) -> None:
    store.put_schedule("default", "s", ScheduleSpec(task="echo", cron=EVERY_SECOND, overlap=Overlap.SKIP,
                                                    catchup=CatchUp.ALL))
    wait_for(lambda: tick_once(store, 1000), timeout=5, what="a first tick")
    time.sleep(2.2)
    tick_once(store, 1000)
    sched = store.get_schedule("default", "s")
    assert sched.fired == 1 and sched.skipped >= 2  # the first job is still queued: later ticks skipped
    store.cancel(sched.last_job or "")
    wait_for(lambda: tick_once(store, 1000), timeout=5, what="a tick after the previous run ended")


@pytest.mark.parametrize("cap", ["max_pending_per_tenant", "max_pending"])
def test_a_tick_over_a_pending_cap_is_skipped_and_recorded(settings: Settings, cap: str) -> None:
    """Backpressure as on POST /jobs: while the tenant (or the task's queue) is at its pending cap, a tick is
    skipped, never queued later, and the schedule shows it (skipped, skipped_full, last_skipped_full)."""
    store = JobStore.from_settings(settings.replace(**{cap: 1}))
    blocker, _ = store.enqueue("echo", {}, owner="default")  # 1 pending: the cap is reached
    store.put_schedule("default", "s", ScheduleSpec(task="echo", cron=EVERY_SECOND, catchup=CatchUp.ALL))

    def skipped_at_cap() -> bool:
        tick_once(store, 1000)
        return store.get_schedule("default", "s").skipped_full >= 1

    wait_for(skipped_at_cap, timeout=10, what="a tick skipped at the cap")
    sched = store.get_schedule("default", "s")
    assert sched.fired == 0 and scheduled_jobs(store) == [] and sched.skipped >= sched.skipped_full >= 1
    body = sched.to_dict(store.redis_now_ms())
    assert body["skipped_full"] == sched.skipped_full and body["last_skipped_full"]
    assert sched.last_skipped_full is not None
    marker = store.redis.get(store.keys.tick_marker_prefix("default", "s") + str(sched.last_skipped_full))
    assert marker == b"full"
    store.cancel(blocker.id)  # room again: the next tick is queued
    wait_for(lambda: tick_once(store, 1000), timeout=10, what="a tick once below the cap")
    after = store.get_schedule("default", "s")
    assert after.fired == 1 and after.last_tick is not None and after.last_tick > sched.last_skipped_full


def test_a_stale_plan_changes_nothing(store: JobStore) -> None:
    store.put_schedule("default", "s", ScheduleSpec(task="echo", cron=EVERY_SECOND, catchup=CatchUp.ALL))
    time.sleep(1.2)
    sched = store.get_schedule("default", "s")
    store.put_schedule("default", "s", ScheduleSpec(task="echo", cron="0 0 1 1 *"))  # version 2
    plan = sched.spec.plan(sched.cursor, store.redis_now_ms(), 1000)
    assert plan.fire
    k = store.keys
    reply = store._fire_schedule(
        keys=[k.schedule("default", "s"), k.schedules_due, k.queue, k.index, k.owner_index("default"), k.pending,
              k.seq, k.paused(), k.control, k.wake, *k.block],
        args=["default/s", sched.version, k.job_prefix, k.tick_marker_prefix("default", "s"), 60, plan.cursor,
              plan.next_due, 0, "allow", "echo", "{}", 1, 1.0, "default", "s", k.queue_name, 5, 0, 0,
              plan.fire[0], tick_job_id(k.prefix, "default", "s", plan.fire[0])],
    )
    assert reply == [b"stale"] and scheduled_jobs(store) == []


# ------------------------------------------------------------------------- many tickers, real processes
def test_many_ticker_processes_enqueue_every_tick_exactly_once(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = JobStore.from_settings(settings)
    names = [f"s{i}" for i in range(4)]
    for name in names:
        store.put_schedule("default", name, ScheduleSpec(task="echo", cron=EVERY_SECOND, catchup=CatchUp.ALL))
    env = service_env(settings.redis_url, settings.key_prefix, settings.queue,
                      {"JOBS_SCHEDULE_TICK_SECONDS": "0.02", "JOBS_SCHEDULE_GRACE_SECONDS": "5"})
    procs = [subprocess.Popen([sys.executable, "-m", "jobs_core.ticker"], env=env, stderr=subprocess.STDOUT,
                              stdout=(tmp_path / f"ticker{i}.log").open("wb"))
             for i in range(8)]
    try:
        # a loaded machine may take seconds to start 8 interpreters: wait for ticks, not for a fixed time
        wait_for(lambda: min(store.get_schedule("default", n).fired for n in names) >= 6, timeout=90,
                 interval=0.5, what="six ticks of every schedule")
        time.sleep(2)  # every ticker now racing on every tick
        assert [p.poll() for p in procs] == [None] * len(procs), "a ticker process died"
    finally:
        for p in procs:
            stop(p)
    jobs = scheduled_jobs(store)
    by_schedule: dict[str, list[int]] = {}
    for tick, job_id in jobs:
        by_schedule.setdefault(store.redis.hget(store.keys.job(job_id), "schedule").decode(), []).append(tick)
    for name in names:
        ticks = by_schedule[name]
        assert len(ticks) >= 5, (name, ticks)
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), f"{name}: a tick missing or doubled"
        assert store.get_schedule("default", name).fired == len(ticks)
    entries = queue_entries(store)
    assert Counter(entries).most_common(1)[0][1] == 1, "a tick's job was queued twice"
    assert sorted(entries) == sorted(j for _, j in jobs)
    assert int(store.redis.hget(store.keys.pending, "default")) == len(jobs)


def test_ticks_go_to_the_priority_list_and_the_paused_list_of_a_paused_queue(store: JobStore) -> None:
    store.put_schedule("default", "p", ScheduleSpec(task="echo", cron=EVERY_SECOND, priority=8))
    wait_for(lambda: tick_once(store, 1000), timeout=5, what="a tick")
    assert store.redis.llen(store.keys.waiting(8)) == 1
    store.pause_queue(store.keys.queue_name)
    wait_for(lambda: tick_once(store, 1000), timeout=5, what="a tick while the queue is paused")
    assert store.redis.llen(store.keys.paused(8)) >= 1  # KEDA does not count it
    assert store.redis.llen(store.keys.waiting(8)) == 0


def test_an_outage_spanning_ticks_is_caught_up_per_policy(store: JobStore) -> None:
    """No ticker runs for ~4 s (every API process down): on return, all fires every missed tick, one only
    the latest, skip none of them (they are past the grace period); later ticks fire as usual."""
    for policy in CatchUp:
        store.put_schedule("default", policy.value, ScheduleSpec(task="echo", cron=EVERY_SECOND, catchup=policy))
    wait_for(lambda: len(tick_once(store, 500)) == 3, timeout=5, interval=0.02, what="a first tick of each")
    before = {p.value: store.get_schedule("default", p.value).last_tick for p in CatchUp}
    time.sleep(4.2)  # the outage
    tick_once(store, 500)
    ticks: dict[str, list[int]] = {}
    for tick, job_id in scheduled_jobs(store):
        ticks.setdefault(store.redis.hget(store.keys.job(job_id), "schedule").decode(), []).append(tick)
    missed = {p: [t for t in ticks[p] if t > (before[p] or 0)] for p in ticks}
    assert len(missed["all"]) >= 4 and missed["all"] == list(range(missed["all"][0], missed["all"][-1] + 1, 1000))
    assert len(missed["one"]) == 1 and missed["one"][0] == missed["all"][-1]
    assert missed.get("skip", []) == [] or missed["skip"][0] > missed["all"][-2]  # at most the on-time tick
    skip = store.get_schedule("default", "skip")
    assert skip.skipped >= 3
    wait_for(lambda: tick_once(store, 500), timeout=5, what="ticking again after the outage")
