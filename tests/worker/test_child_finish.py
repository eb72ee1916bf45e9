"""The slot child finishing its own job (``jobs_worker.child_finish``), with real workers, children and Redis.

Each kill-point test stops the child's own finish call at a point in a proxy between the processes and
Redis (``finish_gate``: held before Redis runs it, or after, with its reply held), then kills or signals
something there, and checks that the job ends once, as the lease check says: not lost, not run twice.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from jobs_core.config import Settings
from jobs_core.model import Job, JobStatus
from jobs_core.store import JobStore
from support.procs import service_env, start_worker, stop, wait_for
from support.redis_server import RedisServer, free_port
from support.valkey_ha import Node

from .conftest import LEASE_SECONDS, REAPER_SECONDS
from .finish_gate import FinishGate, Stop

#: the child of slot 0 names its own claim memo in its finish call (and nothing else does)
CHILD_FINISH = b"/slot0\r\n"


@pytest.fixture
def gate(settings: Settings) -> Iterator[FinishGate]:
    proxy = FinishGate(urlsplit(settings.redis_url).port or 6379)
    yield proxy
    proxy.close()


class Workers:
    """Start ``jobs-worker`` processes (2 slots: a lone job's claim is short, so slot 0's child finishes it) on
    the test's namespace; all are stopped at the end."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        self.settings = settings
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, redis_url: str, **env: str) -> subprocess.Popen[bytes]:
        s = self.settings
        full = service_env(redis_url, s.key_prefix, s.queue, {
            "JOBS_LEASE_SECONDS": str(LEASE_SECONDS), "JOBS_REAPER_INTERVAL_SECONDS": str(REAPER_SECONDS),
            "JOBS_RETRY_BACKOFF_SECONDS": "0.1", "JOBS_DRAIN_SECONDS": "5",
            "JOBS_WORKER_HEALTH_FILE": str(self.tmp_path / "alive"), **env})
        proc = start_worker(full, "--concurrency", "2", log=self.log_path(len(self.started)))
        self.started.append(proc)
        return proc

    def log_path(self, index: int) -> Path:
        return self.tmp_path / f"worker-{index}.log"

    def log(self, index: int = 0) -> list[dict[str, object]]:
        lines = self.log_path(index).read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def said(self, msg: str, job_id: str, index: int = 0) -> bool:
        return any(e.get("msg") == msg and e.get("job") == job_id for e in self.log(index))

    def stop_all(self) -> None:
        for proc in self.started:
            stop(proc, timeout=15)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(settings, tmp_path)
    yield started
    started.stop_all()


def slot_children(worker: subprocess.Popen[bytes]) -> list[int]:
    """The pids of a 2-slot worker's children (the fork server's children: the worker's grandchildren), in
    the order they were started: slot 0's first while neither was restarted."""

    def children(pid: int) -> list[int]:
        try:
            return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def grandchildren() -> list[int]:
        return sorted(g for c in children(worker.pid) for g in children(c))

    both = wait_for(lambda: len(found := grandchildren()) >= 2 and found, 30, what="the slot children")
    assert len(both) == 2, both
    return both


def slot_child(worker: subprocess.Popen[bytes]) -> int:
    """The pid of slot 0's child (the slot a lone job goes to: the first free one)."""
    return slot_children(worker)[0]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def ready(store: JobStore, count: int = 1) -> None:
    wait_for(lambda: len(store.workers()) >= count, 60, what="worker registered")


def memo(store: JobStore, worker_id: str) -> bytes | None:
    """The child's claim memo: the token and statuses of its last finish call."""
    value = store.redis.get(store.keys.claim_memo(f"{worker_id}/slot0"))
    return value if isinstance(value, bytes) else None


def worker_of(store: JobStore, job_id: str) -> str:
    return str(store.attempt_log(job_id)[-1]["worker"])


def held_finish(store: JobStore, workers: Workers, gate: FinishGate, point: str, n: int,
                env: dict[str, str] | None = None, **options: Any) -> tuple[subprocess.Popen[bytes], Job, Stop]:
    """A worker through ``gate``, a lone echo job (``{"n": n}``, enqueue ``options``) and its child's own
    finish call stopped at ``point`` (``finish_gate``)."""
    stop_at = gate.arm(CHILD_FINISH, point)
    worker = workers.start(gate.url, **(env or {}))
    ready(store)
    job, _ = store.enqueue("echo", {"n": n}, **options)
    stop_at.wait()
    return worker, job, stop_at


def test_idle_worker_child_stores_the_success(store: JobStore, workers: Workers, settings: Settings) -> None:
    """A job claimed when the queue was empty is stored by the child (its memo is written) and the worker
    records the end it was told of; a job claimed by a full claim is the worker's own."""
    worker = workers.start(settings.redis_url)
    ready(store)
    job, _ = store.enqueue("echo", {"n": 1})
    wait_for(lambda: store.get(job.id).status is JobStatus.SUCCEEDED, 30, what="echo succeeded")
    worker_id = worker_of(store, job.id)
    assert store.get_result(job.id).data == b'{"n":1}'
    assert (m := memo(store, worker_id)) is not None and m.split(b"\n")[2] == b"succeeded"
    wait_for(lambda: workers.said("job attempt ended", job.id), 10, what="the end logged")
    assert not any(e.get("msg") == "attempt was no longer ours; outcome dropped" for e in workers.log())
    child = slot_child(worker)
    # a job that reports progress is the worker's to finish (its last message is stored before the outcome)
    slept, _ = store.enqueue("sleep", {"seconds": 0.05})
    wait_for(lambda: store.get(slept.id).status is JobStatus.SUCCEEDED, 30, what="sleep succeeded")
    assert memo(store, worker_id) == m and store.get(slept.id).message
    assert slot_child(worker) == child


def test_child_killed_before_its_finish_runs_again(store: JobStore, workers: Workers, gate: FinishGate) -> None:
    worker, job, stop_at = held_finish(store, workers, gate, "request", 2, max_attempts=2)
    os.kill(slot_child(worker), signal.SIGKILL)
    stop_at.release(forward=False)  # the call dies with the child, never run
    wait_for(lambda: store.get(job.id).status is JobStatus.SUCCEEDED, 30, what="attempt 2 succeeded")
    assert store.get(job.id).attempts == 2
    assert [a["outcome"] for a in store.attempt_log(job.id)] == ["retry", "succeeded"]


def test_child_killed_after_its_finish_the_success_stands(store: JobStore, workers: Workers,
                                                          gate: FinishGate) -> None:
    # ran in Redis: the job succeeded; the child has not heard so, nor told the worker
    worker, job, stop_at = held_finish(store, workers, gate, "reply", 3, max_attempts=2)
    os.kill(slot_child(worker), signal.SIGKILL)
    stop_at.release(forward=False)
    # the worker's ChildProcessDied retry is refused: the attempt is no longer its to end
    wait_for(lambda: workers.said("attempt was no longer ours; outcome dropped", job.id), 30, what="refused")
    after = store.get(job.id)
    assert (after.status, after.attempts) == (JobStatus.SUCCEEDED, 1)
    assert store.get_result(job.id).data == b'{"n":3}'


@pytest.mark.parametrize("finish_ran", [True, False], ids=["finish-ran", "finish-not-sent"])
def test_worker_killed_during_the_childs_finish(store: JobStore, workers: Workers, gate: FinishGate,
                                                settings: Settings, finish_ran: bool) -> None:
    """A finish done stands; one whose connection broke is not re-sent by the orphaned child (it sees its
    worker's pipe closed), so the lease expires and the reaper requeues. Either way the child then ends."""
    worker, job, stop_at = held_finish(store, workers, gate, "reply" if finish_ran else "request", 4,
                                       max_attempts=2)
    child = slot_child(worker)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(10)
    stop_at.release(forward=finish_ran)  # the reply reaches the child; or the unsent call's connection breaks
    wait_for(lambda: not alive(child), 30, what="the orphaned child ended")
    workers.start(settings.redis_url)  # a rescuer (its reaper hands an expired lease back)
    if finish_ran:  # the finish done stands
        time.sleep(LEASE_SECONDS + 4 * REAPER_SECONDS)
        after = store.get(job.id)
        assert (after.status, after.attempts) == (JobStatus.SUCCEEDED, 1)
    else:  # the lease expires, the reaper requeues, the rescuer runs it
        wait_for(lambda: store.get(job.id).status is JobStatus.SUCCEEDED, 30, what="rerun succeeded")
        assert store.get(job.id).attempts == 2


def test_heartbeat_between_the_childs_finish_and_its_message(store: JobStore, workers: Workers,
                                                             gate: FinishGate) -> None:
    """The heartbeat reports the job lost (the child ended it) while the child's "finished" waits in the
    pipe: the worker reads the pipe first, a normal end, and keeps its child."""
    worker, job, finish = held_finish(store, workers, gate, "reply", 5)
    children = slot_children(worker)
    child = children[0]
    beat = gate.arm(f'"jobs":["{job.id}"]'.encode(), "request")  # the worker's next heartbeat, held
    beat.wait()
    finish.release()  # the child hears its finish ran and writes "finished" to the pipe
    time.sleep(0.5)
    beat.release()  # the heartbeat runs now: the job is not this worker's running job any more
    wait_for(lambda: workers.said("job attempt ended", job.id), 30, what="the end logged")
    assert not workers.said("lease lost; stopping the job here", job.id)
    assert slot_children(worker) == children and alive(child)


@pytest.mark.parametrize("finish_ran", [True, False], ids=["finish-ran", "finish-sent-late"])
def test_hard_timeout_during_the_childs_finish(store: JobStore, workers: Workers, gate: FinishGate,
                                               finish_ran: bool) -> None:
    # a long lease: the next heartbeat (which would see the success, finish-ran) comes after the timeout
    worker, job, stop_at = held_finish(store, workers, gate, "reply" if finish_ran else "request", 6,
                                       env={"JOBS_LEASE_SECONDS": "30"}, max_attempts=1, timeout=1.0)
    child = slot_child(worker)
    wait_for(lambda: not alive(child), 30, what="the child killed at the job's timeout")
    worker_id = worker_of(store, job.id)
    if not finish_ran:  # the worker stores the JobTimeout failure first (else the late call would win: fine too)
        wait_for(lambda: store.get(job.id).status is JobStatus.FAILED, 30, what="the timeout stored")
    stop_at.release(forward=not finish_ran)  # not run yet: the dead child's call reaches Redis now
    if finish_ran:  # the worker's JobTimeout failure is refused: the success stands
        wait_for(lambda: workers.said("attempt was no longer ours; outcome dropped", job.id), 30, what="refused")
        assert store.get(job.id).status is JobStatus.SUCCEEDED
    else:  # the JobTimeout failure is stored; the late finish is refused as stale
        wait_for(lambda: (memo(store, worker_id) or b"").split(b"\n")[2:3] == [b"stale:failed"], 30,
                 what=f"the late finish refused ({store.get(job.id).status}, memo {memo(store, worker_id)!r})")
        after = store.get(job.id)
        assert after.status is JobStatus.FAILED and after.error is not None and after.error.type == "JobTimeout"


def test_cancel_during_the_childs_finish(store: JobStore, workers: Workers, gate: FinishGate) -> None:
    worker, job, stop_at = held_finish(store, workers, gate, "request", 7)
    child = slot_child(worker)
    worker_id = worker_of(store, job.id)
    store.cancel(job.id)
    wait_for(lambda: not alive(child), 30, what="the child killed after the cancel's grace")
    wait_for(lambda: store.get(job.id).status is JobStatus.CANCELLED, 30, what="cancelled")
    stop_at.release()  # the dead child's call reaches Redis now: refused
    wait_for(lambda: (memo(store, worker_id) or b"").split(b"\n")[2:3] == [b"stale:cancelled"], 30,
             what="the late finish refused")
    assert store.get(job.id).status is JobStatus.CANCELLED


def test_lost_reply_is_resent_and_answered_from_the_childs_memo(store: JobStore, workers: Workers,
                                                                gate: FinishGate) -> None:
    """The child's finish ran but its reply was lost: its re-send (same token, send 2) is answered from the
    child's own memo, "succeeded", so the worker records a normal end instead of a refused outcome."""
    _, job, _ = held_finish(store, workers, gate, "drop", 8)
    wait_for(lambda: workers.said("job attempt ended", job.id), 30, what="the end logged")
    assert not any(e.get("msg") == "attempt was no longer ours; outcome dropped" for e in workers.log())
    assert store.get(job.id).attempts == 1


def test_redis_restart_during_the_childs_finish(tmp_path: Path, settings: Settings) -> None:
    """Redis restarts (AOF kept) under the child's finish: its connection breaks, its re-send meets an empty
    script cache (NOSCRIPT: not run) and hands the result to the worker, which loads the script and stores
    it: one attempt, no refused outcome."""
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()
    proxy = FinishGate(server.port)
    s = dataclasses.replace(settings, redis_url=server.url)
    store = JobStore.from_settings(s)
    started = Workers(s, tmp_path)
    try:
        stop_at = proxy.arm(CHILD_FINISH, "request")
        started.start(proxy.url)
        ready(store)
        job, _ = store.enqueue("echo", {"n": 9})
        stop_at.wait()
        resend = proxy.arm(CHILD_FINISH, "request")
        server.restart()  # the held call's connection breaks with it: the child sends again
        stop_at.release(forward=False)
        resend.wait()
        # an empty script cache for the re-send (the worker may have loaded the script since the restart)
        server.client().script_flush()
        resend.release()
        wait_for(lambda: store.get(job.id).status is JobStatus.SUCCEEDED, 60,
                 what=f"succeeded (status {store.get(job.id).status})")
        assert store.get(job.id).attempts == 1 and store.get_result(job.id).data == b'{"n":9}'
        wait_for(lambda: started.said("job attempt ended", job.id), 30, what="the end logged")
        assert not any(e.get("msg") == "attempt was no longer ours; outcome dropped" for e in started.log())
    finally:
        started.stop_all()
        proxy.close()
        server.stop()


def test_ack_replicas_confirm_the_childs_finish(tmp_path: Path, settings: Settings) -> None:
    """JOBS_ACK_REPLICAS=1 (Valkey primary + replica, AOF, a password): the child's finish is followed by
    the fence write, WAIT and WAITAOF, and reported stored only once confirmed. With the replica frozen
    the child does not report it; the worker gets the result, keeps it until the replica is back, and
    then finds the success (written on the primary by the child's call) already stored."""
    conf = 'appendonly yes\nappendfsync always\nsave ""\nrequirepass pw\nmasterauth pw'
    primary = Node(tmp_path / "primary", conf, password="pw").start()
    replica = Node(tmp_path / "replica", conf, password="pw")
    url = f"redis://:pw@127.0.0.1:{primary.port}/0"
    proxy = FinishGate(primary.port)
    started = Workers(dataclasses.replace(settings, redis_url=url), tmp_path)
    try:
        replica.start(f"replicaof 127.0.0.1 {primary.port}")
        wait_for(lambda: replica.client().info("replication").get("master_link_status") == "up", 30,
                 what="the replica in sync")
        store = JobStore.from_settings(dataclasses.replace(settings, redis_url=url))  # (its writes: no WAITAOF)
        started.start(f"redis://:pw@127.0.0.1:{proxy.port}/0", JOBS_ACK_REPLICAS="1", JOBS_ACK_TIMEOUT_SECONDS="0.5",
                      JOBS_LEASE_SECONDS="30")  # no heartbeat in the frozen spell (it would see the success)
        ready(store)
        first, _ = store.enqueue("echo", {"n": 11})
        wait_for(lambda: started.said("job attempt ended", first.id), 30, what="the first end logged")
        worker_id = worker_of(store, first.id)
        assert (memo(store, worker_id) or b"").split(b"\n")[2:3] == [b"succeeded"]  # the child's call
        stop_at = proxy.arm(CHILD_FINISH, "request")
        second, _ = store.enqueue("echo", {"n": 12})
        stop_at.wait()  # claimed (confirmed); the child's finish waits: the replica stops answering now
        replica.freeze()
        stop_at.release()
        wait_for(lambda: store.get(second.id).status is JobStatus.SUCCEEDED, 30, what="stored on the primary")
        time.sleep(2.0)  # the child's WAITAOF timed out (0.5 s): it must not have reported the job stored
        assert not started.said("job attempt ended", second.id)
        replica.thaw()
        wait_for(lambda: started.said("attempt was no longer ours; outcome dropped", second.id), 60,
                 what="the worker's own finish, once confirmed, found the success stored")
        after = store.get(second.id)
        assert (after.status, after.attempts) == (JobStatus.SUCCEEDED, 1)
    finally:
        started.stop_all()
        proxy.close()
        replica.stop()
        primary.stop()


def test_child_stays_lean_after_finishing(store: JobStore, settings: Settings) -> None:
    """The child's own finish needs no redis-py (which imports OpenTelemetry): a child-side finish run in a
    fresh interpreter with the child's modules stores the success and imports neither."""
    from jobs_worker.child_finish import recipe_for

    job, _ = store.enqueue("echo", {})
    [claimed] = store.claim("host:1:lean", 1)
    recipe = recipe_for(store, "host:1:lean", 0)
    assert recipe is not None
    probe = (
        "import sys, json, jobs_worker.child, jobs_worker.builtin_tasks\n"
        "from jobs_worker.child_finish import Finisher, FinishRecipe, RedisAddress\n"
        "a = json.loads(sys.argv[1])\n"
        "r = FinishRecipe(RedisAddress(a['host'], a['port'], a['db']), bytes.fromhex(a['prefix']))\n"
        "print(json.dumps([Finisher(r).finish(a['job'], 1, b'{}', 'application/json', lambda: False),\n"
        "  sorted(m for m in ('redis', 'jobs_core.store', 'opentelemetry') if m in sys.modules)]))\n"
    )
    a = recipe.address
    arg = json.dumps({"host": a.host, "port": a.port, "db": a.db, "prefix": recipe.prefix.hex(), "job": job.id})
    out = subprocess.run([sys.executable, "-c", probe, arg], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [["finished", "succeeded"], []]
    assert claimed.id == job.id and store.get(job.id).status is JobStatus.SUCCEEDED


def test_the_childs_call_is_the_workers_finish_with_its_own_memo(store: JobStore) -> None:
    """The recipe's bytes plus the finish's fields are, byte for byte, redis-py's packing of the FINISH_CLAIM
    the worker sends for the same success with claim 0, but for the claim memo's key (KEYS[3])."""
    from jobs_core.model import Result
    from jobs_core.store import Finish
    from jobs_worker.child_finish import _bulk, memo_owner, recipe_for

    recipe = recipe_for(store, "host:1:ab", 2)
    assert recipe is not None
    keys, args = store._finish_claim_args("host:1:ab", [Finish("j-1", 3, "succeeded", Result(b"{}", "a/b"))], 0)
    assert keys[2] == store.keys.claim_memo("host:1:ab")
    keys[2] = store.keys.claim_memo(memo_owner("host:1:ab", 2))
    expected = b"".join(store.redis.connection_pool.get_connection().pack_command(
        "EVALSHA", store._finish_claim.sha, len(keys), *keys, *args[:-1], "tok:1"))
    assert recipe.prefix + _bulk("j-1", 3, "succeeded", b"{}", "a/b", "", 0, "tok:1") == expected


def answers(store: JobStore) -> bool:
    try:
        store.ping()
    except redis.ConnectionError:
        return False
    return True


def test_child_finishes_over_tls_with_a_password(tmp_path: Path) -> None:
    """rediss:// with a password and a private CA (as test_tls_and_auth runs Redis): the child's connection
    verifies the server as the worker's does, authenticates, and stores the success; without the CA it
    refuses the server and hands the result to the worker (None)."""
    from jobs_worker.child_finish import Finisher, recipe_for

    from tests.core.test_tls_and_auth import REDIS_SERVER, _certs

    assert REDIS_SERVER
    ca, cert, key = _certs(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", str(cert),
         "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
         "--requirepass", "s3cret", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        s = Settings.from_env({"REDIS_URL": f"rediss://127.0.0.1:{port}/0", "REDIS_PASSWORD": "s3cret",
                               "REDIS_TLS_CA_FILE": str(ca), "JOBS_KEY_PREFIX": "tls-child"})
        store = JobStore.from_settings(s)
        wait_for(lambda: answers(store), 10, what="the TLS server")
        recipe = recipe_for(store, "host:1:tls", 0)
        assert recipe is not None and recipe.address.tls and "s3cret" not in repr(recipe)
        untrusted = dataclasses.replace(recipe, address=dataclasses.replace(recipe.address, tls_ca_file=None))
        job, _ = store.enqueue("echo", {})
        [claimed] = store.claim("host:1:tls", 1)
        assert Finisher(untrusted).finish(job.id, 1, b"{}", "application/json", lambda: False) is None
        assert store.get(job.id).status is JobStatus.RUNNING
        assert Finisher(recipe).finish(job.id, 1, b"{}", "application/json", lambda: False) == ("finished", "succeeded")
        assert store.get(job.id).status is JobStatus.SUCCEEDED and claimed.id == job.id
    finally:
        proc.kill()
        proc.wait(10)
