"""Drive one peer system (run with .venv-bench): enqueue, drain with its workers, round trips.

``python -m bench.peers SYSTEM --redis-url URL --jobs N --round-trips M`` prints one JSON line.
Every system gets the same no-op task (returns its params), the same Redis (flushed first), its results
stored in that Redis, and its recommended 2-core worker setup (see ``SETUPS``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from bench.common import Procs, RedisCost, emit, measure_drain, percentiles

BIN = os.path.dirname(os.path.abspath(os.sys.executable))  # type: ignore[attr-defined]


class Peer:
    """One system: how to enqueue, how to tell a job is done, and its worker command line."""

    name = ""
    queue_key = ""
    procs = 1

    def __init__(self, url: str, client: redis.Redis) -> None:
        self.url = url
        self.r = client

    def worker_argv(self) -> list[str]:
        raise NotImplementedError

    def enqueue(self, i: int) -> Any:
        raise NotImplementedError

    def done_many(self, handles: Sequence[Any]) -> list[bool]:
        raise NotImplementedError

    def round_trip(self, i: int) -> None:
        """Submit one job and block until its result is back."""
        raise NotImplementedError

    def queue_len(self) -> int:
        return int(self.r.llen(self.queue_key))


def _pipe_check(r: redis.Redis, keys: Sequence[str], op: Callable[[Any, str], None]) -> list[Any]:
    pipe = r.pipeline(transaction=False)
    for k in keys:
        op(pipe, k)
    return pipe.execute()


class RQ(Peer):
    queue_key = "rq:queue:bench"
    procs = 2
    worker_class = "rq.worker.SimpleWorker"

    def __init__(self, url: str, client: redis.Redis) -> None:
        super().__init__(url, client)
        from rq import Queue

        from bench.peer_apps.rq_tasks import noop

        self.q = Queue("bench", connection=client)
        self.noop = noop

    def worker_argv(self) -> list[str]:
        return [f"{BIN}/rq", "worker", "--url", self.url, "--worker-class", self.worker_class,
                "--logging_level", "WARNING", "bench"]

    def enqueue(self, i: int) -> Any:
        return self.q.enqueue(self.noop, {"i": i}).id

    def done_many(self, handles: Sequence[Any]) -> list[bool]:
        got = _pipe_check(self.r, [f"rq:job:{h}" for h in handles], lambda p, k: p.hget(k, "status"))
        return [v == b"finished" for v in got]

    def round_trip(self, i: int) -> None:
        job = self.q.enqueue(self.noop, {"i": i})
        result = job.latest_result(timeout=10)
        assert result is not None and result.return_value == {"i": i}, result


class RQFork(RQ):
    worker_class = "rq.worker.Worker"


class CeleryPeer(Peer):
    queue_key = "celery"

    def __init__(self, url: str, client: redis.Redis) -> None:
        super().__init__(url, client)
        from bench.peer_apps.celery_app import noop

        self.noop = noop

    def worker_argv(self) -> list[str]:
        return [f"{BIN}/celery", "-A", "bench.peer_apps.celery_app", "worker", "-P", "prefork", "-c", "2",
                "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]

    def enqueue(self, i: int) -> Any:
        return self.noop.delay({"i": i}).id

    def done_many(self, handles: Sequence[Any]) -> list[bool]:
        return [bool(v) for v in _pipe_check(self.r, [f"celery-task-meta-{h}" for h in handles],
                                             lambda p, k: p.exists(k))]

    def round_trip(self, i: int) -> None:
        assert self.noop.delay({"i": i}).get(timeout=10) == {"i": i}


class DramatiqPeer(Peer):
    queue_key = "dramatiq:default"
    threads = 1

    def __init__(self, url: str, client: redis.Redis) -> None:
        super().__init__(url, client)
        from bench.peer_apps import dramatiq_app

        self.app = dramatiq_app

    def worker_argv(self) -> list[str]:
        argv = [f"{BIN}/dramatiq", "bench.peer_apps.dramatiq_app", "--processes", "2"]
        return argv + (["--threads", str(self.threads)] if self.threads else [])

    def enqueue(self, i: int) -> Any:
        return self.app.noop.send({"i": i})

    def done_many(self, handles: Sequence[Any]) -> list[bool]:
        keys = [self.app.backend.build_message_key(m) for m in handles]
        return [bool(v) for v in _pipe_check(self.r, keys, lambda p, k: p.exists(k))]

    def round_trip(self, i: int) -> None:
        assert self.app.noop.send({"i": i}).get_result(block=True, timeout=10_000) == {"i": i}


class DramatiqDefault(DramatiqPeer):
    threads = 0  # its default: one process per core x 8 threads


class HueyPeer(Peer):
    queue_key = "huey.redis.bench"

    def __init__(self, url: str, client: redis.Redis) -> None:
        super().__init__(url, client)
        from bench.peer_apps import huey_app

        self.app = huey_app

    def worker_argv(self) -> list[str]:
        return [f"{BIN}/huey_consumer", "bench.peer_apps.huey_app.huey", "-w", "2", "-k", "process", "-q"]

    def enqueue(self, i: int) -> Any:
        return self.app.noop({"i": i}).id

    def done_many(self, handles: Sequence[Any]) -> list[bool]:
        return [bool(v) for v in _pipe_check(self.r, list(handles),
                                             lambda p, k: p.hexists("huey.results.bench", k))]

    def round_trip(self, i: int) -> None:
        assert self.app.noop({"i": i}).get(blocking=True, timeout=10) == {"i": i}


class Bare(Peer):
    queue_key = "hotqueue:bare"
    procs = 2

    def worker_argv(self) -> list[str]:
        return [f"{BIN}/python", "-m", "bench.peer_apps.bare_worker"]

    def enqueue(self, i: int) -> Any:
        job_id = f"{os.getpid()}-{i}-{time.monotonic_ns()}"
        self.r.rpush(self.queue_key, json.dumps({"id": job_id, "params": {"i": i}}))
        return job_id

    def done_many(self, handles: Sequence[Any]) -> list[bool]:
        return [bool(v) for v in _pipe_check(self.r, [f"bare:result:{h}" for h in handles],
                                             lambda p, k: p.exists(k))]

    def round_trip(self, i: int) -> None:
        key = f"bare:result:{self.enqueue(i)}"
        deadline = time.monotonic() + 10
        while self.r.get(key) is None:  # no notification in a bare loop: poll tightly
            assert time.monotonic() < deadline
            time.sleep(0.0002)


SETUPS: dict[str, type[Peer]] = {
    "bare": Bare,
    "rq-simple": RQ,
    "rq-fork": RQFork,
    "celery": CeleryPeer,
    "dramatiq-2x1": DramatiqPeer,
    "dramatiq-default": DramatiqDefault,
    "huey": HueyPeer,
}


class Remaining:
    """All-done check that re-tests only the jobs not yet seen done (cheap to poll)."""

    def __init__(self, peer: Peer, handles: list[Any]) -> None:
        self.peer = peer
        self.left = handles
        self.commands = 0  # sent by this check (taken off the peer's commands per job)
        self.round_trips = 0

    def done_many(self, handles: Sequence[Any]) -> list[bool]:
        self.commands += len(handles)
        self.round_trips += 1
        return self.peer.done_many(handles)

    def __call__(self) -> bool:
        if self.left and not self.done_many(self.left[-1:])[0]:
            return False
        for start in range(0, len(self.left), 2000):
            chunk = self.left[start : start + 2000]
            flags = self.done_many(chunk)
            if not all(flags):
                self.left = [h for h, ok in zip(chunk, flags, strict=True) if not ok] + self.left[start + 2000 :]
                return False
        self.left = []
        return True


def run(system: str, url: str, jobs: int, round_trips: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    client.flushdb()
    os.environ["BENCH_REDIS_URL"] = url
    peer = SETUPS[system](url, client)
    cost = RedisCost(client)
    t = time.perf_counter()
    handles = [peer.enqueue(i) for i in range(jobs)]
    enqueue_rate = jobs / (time.perf_counter() - t)
    out: dict[str, Any] = {"system": system, "jobs": jobs, "enqueue_rate": enqueue_rate}
    polls = 0

    def queue_len() -> int:
        nonlocal polls
        polls += 1
        return peer.queue_len()

    with Procs.start(peer.worker_argv(), peer.procs, env={"BENCH_REDIS_URL": url}) as procs:
        remaining = Remaining(peer, handles)
        drain = measure_drain(queue_len, remaining, jobs)
        # life cycle (enqueue + drain) as Redis saw it, the harness's polling taken off; the worker's idle
        # polling while it boots is included, as it is for ours
        out["redis_cost"] = cost.per_job(jobs, polls + remaining.round_trips, polls + remaining.commands)
        out.update(drain_rate=drain["rate"], drain_elapsed=drain["elapsed"], rss_mb=procs.rss_mb())
        if round_trips:
            for i in range(5):  # warm connections and code paths
                peer.round_trip(i)
            samples = []
            for i in range(round_trips):
                t = time.perf_counter()
                peer.round_trip(i)
                samples.append((time.perf_counter() - t) * 1000)
            out["round_trip_ms"] = percentiles(samples)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=sorted(SETUPS))
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--round-trips", type=int, default=300)
    args = parser.parse_args()
    emit(run(args.system, args.redis_url, args.jobs, args.round_trips))


if __name__ == "__main__":
    main()
