"""Drive Jobs API itself (run with the project .venv): enqueue (library and POST /jobs), drain with
``jobs-worker`` processes, round trips, HTTP submit rate against a bare Flask app, Redis cost per job,
scaling with workers and queue size, memory per finished job, worker RSS and expiry.

``python -m bench.ours PART --redis-url URL [...]`` prints one JSON line per call; :mod:`bench.run`
calls every part in turn on one private Redis.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from jobs_core.config import Settings
from jobs_core.model import Submission
from jobs_core.store import JobStore

from bench.common import (
    BENCH_PY,
    ROOT,
    Procs,
    RedisCost,
    emit,
    free_port,
    measure_drain,
    percentiles,
    run_driver,
)

VENV_BIN = ROOT / ".venv" / "bin"
API_KEY = "bench-key-0123456789"


def settings(url: str, **extra: str) -> Settings:
    return Settings.from_env({"REDIS_URL": url, **extra})


def worker_env(url: str, **extra: str) -> dict[str, str]:
    health = os.path.join(tempfile.gettempdir(), f"jobs-bench-worker-{os.getpid()}.alive")
    return {"REDIS_URL": url, "JOBS_LOG_LEVEL": "WARNING", "JOBS_WORKER_HEALTH_FILE": health, **extra}


def start_workers(url: str, procs: int, concurrency: int, **extra: str) -> Procs:
    argv = [str(VENV_BIN / "jobs-worker"), "run", "--concurrency", str(concurrency)]
    return Procs.start(argv, procs, env=worker_env(url, **extra))


class Counted:
    """Wrap a poll function and count its calls (each is one Redis round trip)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.fn()


def harness_commands(queue_len: Counted, all_done: Counted, per_poll: int = 1) -> int:
    """Commands the drain's own polling sent (``per_poll`` per queue-length poll; an all-done poll
    makes two of those): taken off the per-job command counts."""
    return per_poll * (queue_len.calls + 2 * all_done.calls)


def drain(store: JobStore, jobs: int, workers: Procs) -> dict[str, Any]:
    """Drain rate: our jobs leave the leases zset only in FINISH, when their result is stored."""
    r = store.redis
    queue_len = Counted(lambda: r.llen(store.keys.queue))
    all_done = Counted(lambda: r.llen(store.keys.queue) == 0 and r.zcard(store.keys.leases) == 0)
    result = measure_drain(queue_len, all_done, jobs)
    result["harness_round_trips"] = queue_len.calls + 2 * all_done.calls
    result["harness_commands"] = harness_commands(queue_len, all_done)
    result["rss_mb"] = workers.rss_mb()
    return result


def enqueue_lib(store: JobStore, jobs: int) -> tuple[list[str], float]:
    t = time.perf_counter()
    ids = [store.enqueue("echo", {"i": i})[0].id for i in range(jobs)]
    return ids, jobs / (time.perf_counter() - t)


def enqueue_batched(store: JobStore, jobs: int, batch: int) -> tuple[list[str], float]:
    """``enqueue_many`` of ``batch`` jobs per call (a mass producer, or what ``POST /jobs/batch`` sends)."""
    t = time.perf_counter()
    ids: list[str] = []
    for start in range(0, jobs, batch):
        made, _ = store.enqueue_many([Submission("echo", {"i": i}) for i in range(start, min(jobs, start + batch))],
                                     owner="default")
        ids += [j.id for j in made]
    return ids, jobs / (time.perf_counter() - t)


def batched_life(url: str, store: JobStore, jobs: int, procs: int, concurrency: int,
                 batch: int) -> dict[str, Any]:
    """The job life's Redis cost when submissions are batched (``enqueue_many`` of ``batch``), drained by
    the same worker setup: the same measure as the single-submission figure, beside it."""
    client = store.redis
    cost = RedisCost(client)
    ids, rate = enqueue_batched(store, jobs, batch)
    out: dict[str, Any] = {"batch": batch, "jobs": jobs, "enqueue_rate": rate, "enqueue_cost": cost.per_job(jobs)}
    with start_workers(url, procs, concurrency) as workers:
        cost = RedisCost(client)
        d = drain(store, jobs, workers)
        out["worker_cost"] = cost.per_job(jobs, d["harness_round_trips"], d["harness_commands"])
        out["drain_rate"] = d["rate"]
        statuses = [j.status.value for j in store.get_many(ids[-1000:])]
        out["all_succeeded"] = statuses.count("succeeded") == len(statuses)
    return out


def part_drain(url: str, jobs: int, procs: int, concurrency: int, round_trips: int,
               batch: int = 100) -> dict[str, Any]:
    """Library enqueue, drain, Redis cost per job, memory, TTLs, RSS, library round trips; then the same
    job life with batched submissions (``batch`` per ``enqueue_many``; 0 = skip) under ``batched``."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    store = JobStore(client, settings(url))
    cost = RedisCost(client)
    ids, enqueue_rate = enqueue_lib(store, jobs)
    enqueue_cost = cost.per_job(jobs)
    queued = ids[len(ids) // 2]
    memory_queued = {**record_memory(store, queued), "used_memory_per_job": enqueue_cost["memory_bytes"],
                     "index_bytes_per_entry": index_bytes_per_entry(store)}
    out: dict[str, Any] = {"jobs": jobs, "procs": procs, "concurrency": concurrency,
                           "enqueue_rate": enqueue_rate, "enqueue_cost": enqueue_cost,
                           "memory_queued": memory_queued}
    with start_workers(url, procs, concurrency) as workers:
        cost = RedisCost(client)
        d = drain(store, jobs, workers)
        out["worker_cost"] = cost.per_job(jobs, d["harness_round_trips"], d["harness_commands"])
        out.update(drain_rate=d["rate"], drain_elapsed=d["elapsed"], rss_mb=d["rss_mb"])
        statuses = [j.status.value for j in store.get_many(ids[-1000:])]
        out["all_succeeded"] = statuses.count("succeeded") == len(statuses)
        sample = ids[len(ids) // 2]
        out["memory_usage_bytes"] = {
            **record_memory(store, sample),
            "result": client.memory_usage(store.keys.result(sample), samples=0),
            "result_encoding": client.object("encoding", store.keys.result(sample)).decode(),
            "used_memory_per_job": enqueue_cost["memory_bytes"] + out["worker_cost"]["memory_bytes"],
        }
        out["ttl_seconds"] = {"job_hash": client.ttl(store.keys.job(sample)),
                              "result": client.ttl(store.keys.result(sample))}
        out["history_cost"] = history_cost(store, jobs)
        if round_trips:
            out["round_trip_ms"] = lib_round_trips(store, round_trips)
    if batch:
        out["batched"] = batched_life(url, store, jobs, procs, concurrency, batch)
    return out


def _produce(url: str, jobs: int) -> None:
    enqueue_lib(JobStore(redis.Redis.from_url(url), settings(url)), jobs)


def part_producers(url: str, jobs: int, producers: int) -> dict[str, Any]:
    """Lone submissions (``enqueue`` one by one) from ``producers`` processes at once, each on its own
    connection (nothing groups them: group commit is per process): the enqueue's Redis cost per job when
    Redis is busier than one producer keeps it, as many API pods or producers make it."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_produce, args=(url, jobs // producers)) for _ in range(producers)]
    cost = RedisCost(client)
    t = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    n = jobs // producers * producers
    return {"jobs": n, "producers": producers, "enqueue_rate": n / (time.perf_counter() - t),
            "enqueue_cost": cost.per_job(n)}


def record_memory(store: JobStore, job_id: str) -> dict[str, Any]:
    """``MEMORY USAGE`` and ``OBJECT ENCODING`` of a job record, with the server's
    ``hash-max-listpack-value`` (the setting that decides listpack vs hashtable; ``jobs_core.redis_tuning``)."""
    client, key = store.redis, store.keys.job(job_id)
    setting = client.config_get("hash-max-listpack-value").get("hash-max-listpack-value")
    return {"job_hash": client.memory_usage(key, samples=0), "encoding": client.object("encoding", key).decode(),
            "hash_max_listpack_value": int(setting) if setting is not None else None}


def index_bytes_per_entry(store: JobStore) -> float:
    """``MEMORY USAGE`` of the job index ÷ its entries (a skiplist zset once past 128 entries): what each
    job's index entry costs (the tenant's index costs the same again)."""
    client = store.redis
    entries = client.zcard(store.keys.index)
    return (client.memory_usage(store.keys.index, samples=0) or 0) / max(1, entries)


def history_cost(store: JobStore, jobs: int) -> dict[str, float]:
    """Commands per job the per-minute history counters cost (included in ``worker_cost``), counted from
    the hashes themselves: every field's count is one ``HINCRBY``, plus one ``EXPIRE`` per minute's hash;
    ``run_time`` is the run-time histogram's share (one ``HINCRBY`` per job, ``rt:<task>:<bucket>``)."""
    total = expires = run_time = 0
    for key in store.redis.scan_iter(store.keys.history_prefix + "*", count=1000):
        expires += 1
        for field, n in store.redis.hgetall(key).items():
            total += int(n)
            run_time += int(n) if field.startswith(b"rt:") else 0
    return {"commands": (total + expires) / jobs, "run_time": run_time / jobs, "hashes": expires}


def lib_round_trips(store: JobStore, count: int) -> dict[str, float]:
    """Submit -> result as a library user does it: ``enqueue(reply=True)`` + ``wait_result`` (the finish
    publishes record and result to the thread's reply channel, subscribed once: no read after the submit),
    sequentially, on idle workers."""
    samples = []
    for i in range(count + 5):
        t = time.perf_counter()
        job, _ = store.enqueue("echo", {"i": i}, reply=True)
        done, result = store.wait_result(job.id, 10)  # the result comes with the end notification
        if i >= 5:  # the first few warm connections and code paths
            samples.append((time.perf_counter() - t) * 1000)
        assert done.status.value == "succeeded" and result is not None and json.loads(result.data) == {"i": i}, done
    return percentiles(samples)


class Gunicorn:
    """The API (``jobs-api``, shipped settings) or the hello app under the very same settings."""

    def __init__(self, url: str, app: str | None = None) -> None:
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": url, "JOBS_BIND": f"127.0.0.1:{self.port}",
               "JOBS_API_KEYS": f"bench:{API_KEY}", "JOBS_LOG_LEVEL": "WARNING",
               # the bench queues far more than the shipped per-tenant backpressure allows at once
               "JOBS_MAX_PENDING": "10000000", "JOBS_MAX_PENDING_PER_TENANT": "10000000"}
        argv = [str(VENV_BIN / "jobs-api")] + ([app] if app else [])
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs = Procs([self.proc])
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz" if app is None else "/jobs")
                if conn.getresponse().status < 500:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jobs"

    def load(self, concurrency: int, duration: float = 0.0, count: int = 0, path: str = "",
             body: str = "") -> dict[str, Any]:
        args = [self.url + path, "--concurrency", str(concurrency), "--header", f"Authorization: Bearer {API_KEY}"]
        args += ["--count", str(count)] if count else ["--duration", str(duration)]
        args += ["--body", body] if body else []
        return run_driver(BENCH_PY, "bench.http_load", args)

    def versus(self, other: Gunicorn, concurrency: int, duration: float, rounds: int,
               redis_pid: int | None = None) -> dict[str, Any]:
        """This server (``a``) against ``other`` (``b``) in ``rounds`` alternating rounds of
        ``duration / rounds`` seconds each, from one load process (``bench.http_load --versus``); ``a``'s CPU
        per request includes the Redis process ``redis_pid`` (ours uses it, the bare app does not)."""
        pids = ",".join(str(p) for p in (self.proc.pid, redis_pid) if p)
        args = [self.url, "--versus", other.url, "--concurrency", str(concurrency), "--duration", str(duration),
                "--rounds", str(rounds), "--warmup", str(min(1.0, duration / 6)), "--header",
                f"Authorization: Bearer {API_KEY}", "--pids", pids, "--versus-pids", str(other.proc.pid)]
        return run_driver(BENCH_PY, "bench.http_load", args)

    def stop(self) -> None:
        self.procs.stop()


#: alternating rounds per client count of the POST /jobs vs bare Flask comparison (each server gets
#: ``duration / HTTP_ROUNDS`` seconds per round; short rounds pair the two sides closely in time)
HTTP_ROUNDS = 12


def http_round_trips(port: int, count: int, prefer: bool = False) -> dict[str, float]:
    """Submit -> result over HTTP on one keep-alive connection: the 3-request path (``POST /jobs`` ->
    ``GET /jobs/<id>?wait=10`` long-poll -> ``GET /jobs/<id>/result``), or with ``prefer`` the one request
    ``POST /jobs`` + ``Prefer: wait=10`` (answered 200 with the finished job and its JSON result inline)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    samples = []
    for i in range(count + 5):
        t = time.perf_counter()
        conn.request("POST", "/jobs", body=json.dumps({"task": "echo", "params": {"i": i}}),
                     headers={**auth, "Content-Type": "application/json", **({"Prefer": "wait=10"} if prefer else {})})
        resp = conn.getresponse()
        job = json.loads(resp.read())
        if prefer:
            assert resp.status == 200 and resp.headers["Preference-Applied"] == "wait", job
            assert job["status"] == "succeeded" and job["result"] == {"i": i}, job
        else:
            assert resp.status == 202, job
            conn.request("GET", f"/jobs/{job['id']}?wait=10", headers=auth)
            resp = conn.getresponse()
            assert json.loads(resp.read())["status"] == "succeeded"
            conn.request("GET", f"/jobs/{job['id']}/result", headers=auth)
            resp = conn.getresponse()
            assert json.loads(resp.read()) == {"i": i}
        if i >= 5:
            samples.append((time.perf_counter() - t) * 1000)
    conn.close()
    return percentiles(samples)


BATCH_CLIENTS = 4


def batch_load(api: Gunicorn, batch: int, duration: float) -> dict[str, Any]:
    """``POST /jobs/batch`` of ``batch`` no-op jobs each, ``BATCH_CLIENTS`` clients: jobs accepted per second
    (only 202 answers count)."""
    body = json.dumps({"jobs": [{"task": "echo", "params": {"i": i}} for i in range(batch)]})
    res = api.load(BATCH_CLIENTS, duration=duration, path="/batch", body=body)
    accepted = res["statuses"].get("202", 0)
    return {**res, "batch": batch, "clients": BATCH_CLIENTS, "jobs_per_s": accepted * batch / res["elapsed"]}


def part_http(url: str, jobs: int, procs: int, concurrency: int, round_trips: int, duration: float,
              batch: int = 500) -> dict[str, Any]:
    """POST /jobs: enqueue rate and drain of those jobs, HTTP round trips, submit rate vs bare Flask,
    POST /jobs/batch jobs accepted per second."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    store = JobStore(client, settings(url))
    out: dict[str, Any] = {}
    with start_workers(url, 1, 1):  # publishes the task catalogue the API validates against
        deadline = time.monotonic() + 30
        while "echo" not in store.tasks():
            assert time.monotonic() < deadline, "no worker published its tasks"
            time.sleep(0.05)
    api = Gunicorn(url)
    try:
        enq = api.load(32, count=jobs)
        out["http_enqueue"] = enq
        with start_workers(url, procs, concurrency) as workers:
            d = drain(store, jobs, workers)
            out["http_drain_rate"] = d["rate"]
            if round_trips:
                out["http_round_trip_ms"] = http_round_trips(api.port, round_trips)  # 3 requests
                out["http_prefer_round_trip_ms"] = http_round_trips(api.port, round_trips, prefer=True)
        # Both servers up at once (the idle one costs nothing) and measured from one load process in
        # alternating rounds (A B, B A, ...) after a warm-up of each: a burst of other load on the machine
        # hits both sides alike, and each round gives one paired ratio (bench/http_load.py).
        hello = Gunicorn(url, app="bench.hello_app:app")
        try:
            for c in (8, 32):
                ab = api.versus(hello, c, duration=duration, rounds=HTTP_ROUNDS if duration >= 3 else 4,
                                redis_pid=int(client.info("server")["process_id"]))
                out[f"api_c{c}"], out[f"hello_c{c}"] = ab["a"], ab["b"]
                out[f"ratio_c{c}"] = {**ab["ratio"], "rounds": ab["rounds"], "segment_s": ab["segment_s"],
                                      "warmup_s": ab["warmup_s"], "load": ab["load"],
                                      "others_cpu_share": ab.get("others_cpu_share")}
        finally:
            hello.stop()
        out["batch"] = batch_load(api, batch, duration / 2)
    finally:
        api.stop()
    return out


def part_scale(url: str, jobs: int, procs: int, concurrency: int, keep: bool = False,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    """One drain with a given setup, plus its Redis cost per job (for the scaling tables).

    With ``keep`` the finished jobs of earlier runs stay in Redis (records, results, indexes), to show
    that they do not make the next jobs dearer.
    """
    client = redis.Redis.from_url(url)
    if not keep:
        client.flushdb()
    finished_before = int(client.zcard(Settings.from_env({"REDIS_URL": url}).keys.index))
    store = JobStore(client, settings(url))
    _, enqueue_rate = enqueue_lib(store, jobs)
    with start_workers(url, procs, concurrency, **(env or {})) as workers:
        cost = RedisCost(client)
        d = drain(store, jobs, workers)
        c = cost.per_job(jobs, d["harness_round_trips"], d["harness_commands"])
    return {"jobs": jobs, "procs": procs, "concurrency": concurrency, "drain_rate": d["rate"],
            "enqueue_rate": enqueue_rate, "redis_cpu_us": c["redis_cpu_us"], "round_trips": c["round_trips"],
            "commands": c["commands"], "rss_mb": d["rss_mb"], "finished_before": finished_before}


CURVE_SLOTS = 4  # slots per worker process as recommended (README, Scaling): one process = one pod


def part_curve(url: str, jobs: int, procs: int, job_ms: float) -> dict[str, Any]:
    """One point of the scale-out curve: ``procs`` worker processes x ``CURVE_SLOTS`` slots against one
    Redis, jobs of ``job_ms`` (the bench's ``nap`` task; 0 = the no-op ``echo``).

    The jobs are queued into a paused queue and the queue is resumed only once every worker has
    registered, so that 32 processes booting on 2 cores do not count as drain time. Redis cost is
    measured over the drain only (claim, finish, heartbeats, reaper, history counters): the enqueue
    cost is the drain part's, added in the report.
    """
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = {"JOBS_TASK_MODULES": "bench.bench_tasks"}
    store = JobStore(client, settings(url))
    task, params = ("nap", {"ms": job_ms}) if job_ms else ("echo", {})
    store.pause_queue(store.keys.queue_name)
    for start in range(0, jobs, 500):
        store.enqueue_many([Submission(task, {**params, "i": i}) for i in range(start, min(jobs, start + 500))],
                           owner="bench")
    with start_workers(url, procs, CURVE_SLOTS, **env) as workers:
        deadline = time.monotonic() + 300
        while client.zcard(store.keys.workers) < procs and time.monotonic() < deadline:
            time.sleep(0.2)
        registered = int(client.zcard(store.keys.workers))
        cost = RedisCost(client)
        store.resume_queue(store.keys.queue_name)
        d = drain(store, jobs, workers)
        c = cost.per_job(jobs, d["harness_round_trips"], d["harness_commands"])
    return {"jobs": jobs, "procs": procs, "slots": CURVE_SLOTS, "job_ms": job_ms, "registered": registered,
            "drain_rate": d["rate"], "redis_cpu_us": c["redis_cpu_us"], "commands": c["commands"],
            "round_trips": c["round_trips"], "rss_mb": d["rss_mb"]}


@contextlib.contextmanager
def otlp_sink() -> Iterator[str]:
    """An OTLP/HTTP endpoint on loopback that accepts every export and drops it (what a collector costs the
    exporter, without a collector's own CPU on these 2 cores)."""
    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def part_tracing(url: str, jobs: int, procs: int, concurrency: int) -> dict[str, Any]:
    """The drain with tracing off, then on (every attempt's spans exported over OTLP/HTTP to a local sink):
    what tracing costs the workers."""
    off = part_scale(url, jobs, procs, concurrency)
    with otlp_sink() as endpoint:
        on = part_scale(url, jobs, procs, concurrency, env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    return {"jobs": jobs, "procs": procs, "concurrency": concurrency, "off_rate": off["drain_rate"],
            "on_rate": on["drain_rate"], "off_round_trips": off["round_trips"], "on_round_trips": on["round_trips"],
            "overhead_pct": 100 * (1 - on["drain_rate"] / off["drain_rate"]) if off["drain_rate"] else None}


MULTI_QUEUES = ("jobs", "bulk", "mail")


def part_multi(url: str, jobs: int, procs: int, concurrency: int) -> dict[str, Any]:
    """The drain with several queues and priorities in use: jobs spread over three queues and all ten
    priorities, workers consuming the three queues in order (beside ``drain``'s single-queue figure)."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    store = JobStore(client, settings(url))
    for i in range(jobs):
        store.enqueue("echo", {"i": i}, queue=MULTI_QUEUES[i % 3], priority=i % 10)
    keys = [store.keys.for_queue(q) for q in MULTI_QUEUES]

    def waiting() -> int:
        pipe = client.pipeline(transaction=False)
        for k in keys:
            for name in k.waiting_lists:
                pipe.llen(name)
        return int(sum(pipe.execute()))

    def running() -> int:
        pipe = client.pipeline(transaction=False)
        for k in keys:
            pipe.zcard(k.leases)
        return int(sum(pipe.execute()))

    with start_workers(url, procs, concurrency, JOBS_QUEUES=",".join(MULTI_QUEUES)) as workers:
        cost = RedisCost(client)
        queue_len = Counted(waiting)
        all_done = Counted(lambda: waiting() == 0 and running() == 0)
        d = measure_drain(queue_len, all_done, jobs)
        c = cost.per_job(jobs, queue_len.calls + 2 * all_done.calls,
                         harness_commands(queue_len, all_done, 3 * 10))  # 10 waiting lists per queue
        rss = workers.rss_mb()
    return {"jobs": jobs, "procs": procs, "concurrency": concurrency, "queues": len(MULTI_QUEUES),
            "priorities": 10, "drain_rate": d["rate"], "round_trips": c["round_trips"],
            "commands": c["commands"], "redis_cpu_us": c["redis_cpu_us"], "rss_mb": rss}


def part_expiry(url: str) -> dict[str, Any]:
    """Records and results expire (short TTLs here), and the reaper's pruning drops their index entries."""
    client = redis.Redis.from_url(url)
    client.flushdb()
    ttl = {"JOBS_RESULT_TTL_SECONDS": "1", "JOBS_RECORD_TTL_SECONDS": "2"}
    store = JobStore(client, settings(url, **ttl))
    ids, _ = enqueue_lib(store, 200)
    with start_workers(url, 1, 2, **ttl) as workers:
        drain(store, 200, workers)
    before = sum(client.exists(store.keys.job(i), store.keys.result(i)) for i in ids)
    time.sleep(2.5)
    after = sum(client.exists(store.keys.job(i), store.keys.result(i)) for i in ids)
    index_before = client.zcard(store.keys.index)
    pruned = store.prune_indexes(batch=1000)
    return {"keys_after_finish": before, "keys_after_ttl": after, "index_entries": index_before,
            "index_pruned": pruned, "index_left": client.zcard(store.keys.index),
            "tenant_index_left": client.zcard(store.keys.owner_index("default"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["drain", "http", "scale", "multi", "expiry", "tracing", "curve",
                                         "producers"])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="scale: keep earlier runs' finished jobs")
    parser.add_argument("--job-ms", type=float, default=0.0, help="curve: length of each job")
    parser.add_argument("--producers", type=int, default=8, help="producers: processes enqueuing at once")
    parser.add_argument("--batch", type=int, default=None,
                        help="http: jobs per POST /jobs/batch (500); drain: jobs per enqueue_many of the "
                             "batched job life (100; 0 = skip)")
    a = parser.parse_args()
    if a.part == "drain":
        emit(part_drain(a.redis_url, a.jobs, a.procs, a.concurrency, a.round_trips,
                        100 if a.batch is None else a.batch))
    elif a.part == "http":
        emit(part_http(a.redis_url, a.jobs, a.procs, a.concurrency, a.round_trips, a.duration,
                       500 if a.batch is None else a.batch))
    elif a.part == "scale":
        emit(part_scale(a.redis_url, a.jobs, a.procs, a.concurrency, a.keep))
    elif a.part == "producers":
        emit(part_producers(a.redis_url, a.jobs, a.producers))
    elif a.part == "curve":
        emit(part_curve(a.redis_url, a.jobs, a.procs, a.job_ms))
    elif a.part == "multi":
        emit(part_multi(a.redis_url, a.jobs, a.procs, a.concurrency))
    elif a.part == "tracing":
        emit(part_tracing(a.redis_url, a.jobs, a.procs, a.concurrency))
    else:
        emit(part_expiry(a.redis_url))


if __name__ == "__main__":
    sys.exit(main())
