"""Queues with real worker processes: routing, strict queue order, a worker that lacks a task never fails
its jobs (two task sets on one queue, a rolling update adding a task), the cluster-wide cap with a worker
SIGKILLed while holding capped jobs, and ``--once``."""

from __future__ import annotations

import signal
import threading
import time

from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from support.procs import stop, wait_for

from .conftest import StartWorker


def executions(store: JobStore, key: str) -> list[str]:
    return [x.decode() for x in store.redis.lrange(key, 0, -1)]


def all_succeed(store: JobStore, ids: list[str], timeout: float = 60) -> None:
    def done() -> bool:
        jobs = store.get_many(ids)
        failed = [j for j in jobs if j.status is JobStatus.FAILED]
        assert not failed, f"a job failed: {failed[0].error}"
        return all(j.status is JobStatus.SUCCEEDED for j in jobs)

    wait_for(done, timeout, interval=0.2, what="every job succeeded")


def test_task_declares_its_queue_and_workers_route_it(store: JobStore, workers: StartWorker, namespace: str) -> None:
    gpu = f"{namespace}-gpu"
    workers("--queues", f"{gpu},{namespace}", TEST_ROUTED_QUEUE=gpu)
    info = wait_for(lambda: store.tasks().get("routed"), 30, what="routed published")
    assert info.queue == gpu and store.tasks()["echo"].queue == namespace
    job, _ = store.enqueue("routed", {}, queue=info.queue)
    all_succeed(store, [job.id])
    assert store.get(job.id).queue == gpu
    status = wait_for(lambda: store.task_statuses()["routed"], 10, what="status")
    assert status.live and status.workers == 1 and status.queue_conflict == []


def test_a_worker_on_a_b_takes_a_first(store: JobStore, workers: StartWorker, namespace: str) -> None:
    a, b = f"{namespace}-a", f"{namespace}-b"
    key = f"{namespace}:ran"
    ids_b = [store.enqueue("record", {"key": key}, queue=b, priority=9)[0].id for _ in range(3)]
    ids_a = [store.enqueue("record", {"key": key}, queue=a, priority=0)[0].id for _ in range(3)]
    workers("--queues", f"{a},{b}", "--burst")
    all_succeed(store, ids_a + ids_b)
    assert [e.split(":")[0] for e in executions(store, key)] == ids_a + ids_b


def test_two_task_sets_on_one_queue_never_fail_a_job(store: JobStore, workers: StartWorker, namespace: str) -> None:
    key = f"{namespace}:ran"
    workers("-c", "2", JOBS_TASK_MODULES="")  # built-in tasks only: lacks "record"
    workers()  # has "record"
    ids = []
    for i in range(12):
        ids.append(store.enqueue("record" if i % 2 else "echo", {"key": key})[0].id)
    all_succeed(store, ids)
    ran = executions(store, key)
    assert sorted(e.split(":")[0] for e in ran) == sorted(ids[1::2]) and all(e.endswith(":1") for e in ran)


def test_rolling_update_adding_a_task_runs_jobs_queued_before_it(
    store: JobStore, workers: StartWorker, namespace: str
) -> None:
    key = f"{namespace}:ran"
    old = workers(JOBS_TASK_MODULES="")  # the old version: no "record" task yet
    ids = [store.enqueue("record", {"key": key})[0].id for _ in range(3)]
    wait_for(lambda: store.counts()["unrunnable"] == 3, 30, what="old worker set the jobs aside")
    time.sleep(1)  # the old worker keeps running: it must not take them again, nor fail them
    jobs = store.get_many(ids)
    assert all(j.status is JobStatus.QUEUED and j.attempts == 0 for j in jobs)
    workers()  # the new version starts beside it
    all_succeed(store, ids)
    assert sorted(e.split(":")[0] for e in executions(store, key)) == sorted(ids)
    assert old.poll() is None


def test_cap_holds_with_a_worker_sigkilled_while_holding_capped_jobs(
    store: JobStore, workers: StartWorker, namespace: str
) -> None:
    cap = 2
    store.set_queue_cap(store.settings.queue, cap)
    ids = [store.enqueue("record", {"key": f"{namespace}:ran", "seconds": 0.3})[0].id for _ in range(16)]
    victim = workers("-c", "2")
    worst = [0]
    stop_watch = threading.Event()

    def watch() -> None:
        while not stop_watch.is_set():
            snapshot = store.redis.pipeline(transaction=True)  # one consistent view of every job
            for i in ids:
                snapshot.hget(store.keys.job(i), "status")
            worst[0] = max(worst[0], sum(1 for s in snapshot.execute() if s == b"running"))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        wait_for(lambda: store.queue_stats(store.settings.queue).running == cap, 30, what="victim holds the cap")
        for _ in range(3):
            workers("-c", "2")
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        all_succeed(store, ids, timeout=90)
    finally:
        stop_watch.set()
        watcher.join(10)
    assert 0 < worst[0] <= cap


def test_once_runs_one_job_and_exits(store: JobStore, workers: StartWorker) -> None:
    ids = [store.enqueue("echo", {"i": i})[0].id for i in range(2)]
    proc = workers("--once")
    assert proc.wait(60) == 0
    statuses = sorted(j.status.value for j in store.get_many(ids))
    assert statuses == ["queued", "succeeded"]


def test_once_sigkilled_mid_job_is_reaped_and_run_again(store: JobStore, workers: StartWorker, namespace: str) -> None:
    key = f"{namespace}:ran"
    job, _ = store.enqueue("record", {"key": key, "seconds": 60}, max_attempts=3)
    once = workers("--once")
    wait_for(lambda: executions(store, key), 30, what="the job started")
    once.send_signal(signal.SIGKILL)
    once.wait(10)
    worker = workers()  # another worker: the reaper hands the job back once the lease expires
    wait_for(lambda: len(executions(store, key)) == 2, 30, what="the job ran again")
    assert executions(store, key)[1] == f"{job.id}:2"
    stop(worker, signal.SIGKILL)


def test_tasks_and_retire_task_commands(store: JobStore, worker_env: dict[str, str]) -> None:
    import subprocess

    from jobs_core.model import TaskInfo
    from support.procs import VENV_BIN

    store.publish_tasks([TaskInfo("gone"), TaskInfo("kept")])

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(VENV_BIN / "jobs-worker"), *args], env=worker_env, capture_output=True,
                              text=True, timeout=60)

    listed = cli("tasks")
    assert listed.returncode == 0 and "gone\tqueue=" in listed.stdout and "workers=0" in listed.stdout
    assert cli("retire-task", "gone").stdout.strip() == "retired gone"
    assert "gone" not in store.tasks() and "kept" in store.tasks()
    missing = cli("retire-task", "gone")
    assert missing.returncode == 1 and "no task named 'gone'" in missing.stderr


def test_burst_worker_lacking_a_task_exits_leaving_its_jobs_queued(store: JobStore, workers: StartWorker) -> None:
    job, _ = store.enqueue("record", {"key": "unused"})
    proc = workers("--burst", JOBS_TASK_MODULES="")
    assert proc.wait(60) == 0
    assert store.get(job.id).status is JobStatus.QUEUED and store.counts()["unrunnable"] == 1
