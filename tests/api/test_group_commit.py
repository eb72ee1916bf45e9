"""Group commit through the real server: one gunicorn process whose threads submit at once (their
enqueues share round trips, see ``jobs_core.group_commit``), on a private Redis.

Each answer must be the one that request alone would get, and each job must be stored exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
from jobs_core.config import Settings
from jobs_core.store import JobStore
from support.redis_server import RedisServer

from api.conftest import TASKS
from api.stack import ApiStack, http

KEYS = {"a": "group-key-a", "b": "group-key-b"}
CAP = 20  # JOBS_MAX_PENDING_PER_TENANT


def _stack(tmp_path: Path, url: str, cap: int = CAP) -> ApiStack:
    s = ApiStack(tmp_path, url, workers=0, web_concurrency=1, api_keys=",".join(f"{t}:{k}" for t, k in KEYS.items()),
                 extra_env={"JOBS_API_THREADS": "16", "JOBS_MAX_PENDING_PER_TENANT": str(cap)})
    JobStore.from_settings(Settings(redis_url=url, key_prefix=s.namespace, queue=s.namespace)).publish_tasks(TASKS)
    return s.start()


def _post(url: str, tenant: str, body: Any, key: str | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {"Authorization": f"Bearer {KEYS[tenant]}"}
    if key:
        headers["Idempotency-Key"] = key
    status, hdrs, raw = http("POST", url + "/jobs", body, headers)
    return status, hdrs, json.loads(raw)


def _stored(client: redis.Redis, ns: str) -> dict[str, dict[str, Any]]:
    """id -> (owner, params) of every job record of the stack's namespace."""
    out = {}
    for key in client.scan_iter(f"{ns}:job:*", count=1000):
        owner, params = client.hmget(key, "owner", "params")
        if params is not None:
            out[key.decode().rsplit(":", 1)[1]] = {"owner": owner.decode(), "params": json.loads(params)}
    return out


def test_concurrent_submissions_each_get_their_own_answer_and_are_stored_once(
        private_redis: RedisServer, tmp_path: Path) -> None:
    stack = _stack(tmp_path, private_redis.url)
    try:
        requests: list[tuple[str, Any, str | None]] = []
        requests += [("a", {"task": "echo", "params": {"n": i}}, None) for i in range(12)]
        requests += [("a", {"task": "sleep", "params": {"seconds": 1}}, f"same-{k}") for k in range(4) for _ in (0, 1)]
        requests += [("a", {"task": "sleep", "params": {"seconds": s}}, "conflict") for s in (2, 3)]
        requests += [("a", {"task": "nope"}, None), ("a", {"task": "primes", "params": {"limit": "x"}}, None)]
        requests += [("b", {"task": "echo", "params": {"n": i}}, None) for i in range(CAP + 6)]
        start = threading.Barrier(len(requests))

        def send(req: tuple[str, Any, str | None]) -> tuple[int, dict[str, str], Any]:
            start.wait(30)
            return _post(stack.url, *req)

        with ThreadPoolExecutor(len(requests)) as pool:
            answers = list(pool.map(send, requests))
        by_status = Counter(status for status, _, _ in answers)
        assert by_status == Counter({202: 12 + 8 + 1 + CAP, 422: 1 + 2, 429: 6}), by_status

        # tenant b: exactly the cap was taken, the rest refused with 429 problems naming the tenant cap
        b_answers = answers[-(CAP + 6):]
        assert sum(1 for s, _, _ in b_answers if s == 202) == CAP
        assert all(body["type"].endswith("/queue-full") for s, _, body in b_answers if s == 429)
        # idempotent re-sends: one job per key, the second answer replays it
        for k in range(4):
            pair = [answers[12 + 2 * k], answers[12 + 2 * k + 1]]
            assert pair[0][2]["id"] == pair[1][2]["id"]
            assert sorted(h.get("idempotent-replayed", "") for _, h, _ in pair) == ["", "true"]
        conflict = sorted(answers[20:22], key=lambda a: a[0])  # the key's first use wins; the other is refused
        assert [s for s, _, _ in conflict] == [202, 422]
        assert "different request" in conflict[1][2]["detail"]
        assert [a[0] for a in answers[22:24]] == [422, 422]

        accepted = {body["id"]: body for status, _, body in answers if status == 202}
        client = redis.Redis.from_url(private_redis.url)
        stored = _stored(client, stack.namespace)
        assert set(stored) == set(accepted)  # every 202 is stored; nothing refused is
        for job_id, body in accepted.items():
            assert stored[job_id] == {"owner": body["tenant"], "params": body["params"]}
        queued = [x.decode().strip('"') for x in client.lrange(f"hotqueue:{stack.namespace}", 0, -1)]
        assert sorted(queued) == sorted(accepted)  # each queued exactly once
        assert {k.decode(): int(v) for k, v in client.hgetall(f"{stack.namespace}:pending").items()} == {
            "a": 12 + 4 + 1, "b": CAP}
    finally:
        stack.stop()


def test_redis_killed_while_submissions_are_in_flight_no_202_unstored_and_none_stored_twice(
        tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", appendfsync="always").start()  # a 202 is on disk
    stack = _stack(tmp_path / "stack", server.url, cap=10_000)
    try:
        answers: list[tuple[int, Any]] = []
        lock = threading.Lock()
        sent = threading.Semaphore(0)

        def client(c: int) -> None:
            for i in range(40):
                status, _, body = _post(stack.url, "a" if c % 2 else "b", {"task": "echo", "params": {"c": c, "i": i}})
                with lock:
                    answers.append((status, body))
                sent.release()

        threads = [threading.Thread(target=client, args=(c,)) for c in range(16)]
        for t in threads:
            t.start()
        for _ in range(100):  # some submissions are through, more are in flight
            sent.acquire(timeout=30)
        server.kill()
        time.sleep(2)  # longer than the client's retries: the round trips in flight fail (503) ...
        server.start()  # ... and the next ones find it again, restarted from its AOF on the same port
        for t in threads:
            t.join(120)

        statuses = Counter(status for status, _ in answers)
        assert set(statuses) <= {202, 503}, statuses
        assert statuses[202] >= 100
        stored = _stored(redis.Redis.from_url(server.url), stack.namespace)
        accepted = {body["id"]: body for status, body in answers if status == 202}
        missing = set(accepted) - set(stored)
        assert not missing, f"{len(missing)} jobs answered 202 are not stored"
        for job_id, body in accepted.items():
            assert stored[job_id]["params"] == body["params"]
        # no submission stored twice (a 503'd one may be stored once: its client cannot know, as before)
        submissions = Counter(json.dumps(s["params"], sort_keys=True) for s in stored.values())
        assert max(submissions.values()) == 1
        queued = [x.decode() for x in redis.Redis.from_url(server.url).lrange(f"hotqueue:{stack.namespace}", 0, -1)]
        assert len(queued) == len(set(queued)) == len(stored)
    finally:
        stack.stop()
        server.stop()
