"""A lone ``POST /jobs`` (nothing to group with) goes through the lone submission's script
(``lua/enqueue_one.lua``, profile 19) with the caps the API always passes: its Redis commands are the job's
writes and ONE ``EXISTS`` for both caps, not the grouped script's ``ZCARD`` + ``LLEN`` + ``EXISTS`` + ``HGET``;
and its caps still refuse (429) with nothing stored."""

from __future__ import annotations

from collections import Counter
from typing import Any

from jobs_core.config import Settings
from jobs_core.store import JobStore

from api.conftest import TASKS, make_app


def _calls(store: JobStore) -> Counter[str]:
    stats = store.redis.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})


def test_a_lone_post_costs_the_jobs_writes_and_one_exists_for_the_caps(private_redis: Any,
                                                                       settings: Settings) -> None:
    own = settings.replace(redis_url=private_redis.url, max_pending=3, max_pending_per_tenant=1000)
    store = JobStore.from_settings(own)
    store.publish_tasks(TASKS)
    client = make_app(own, store).test_client()
    for n in range(2):  # scripts cached, queue known, the list not empty (no wake token below)
        assert client.post("/jobs", json={"task": "echo", "params": {"n": n}}).status_code == 202
    before = _calls(store)
    assert client.post("/jobs", json={"task": "echo", "params": {"n": 2}}).status_code == 202
    ran = _calls(store) - before
    enqueue = {c: ran[c] for c in ("evalsha", "hmget", "exists", "rpush", "hincrby", "incrby", "hset", "zadd",
                                   "xadd", "zcard", "llen", "hget")}
    assert enqueue == {"evalsha": 1, "hmget": 1, "exists": 1, "rpush": 1, "hincrby": 1, "incrby": 1, "hset": 1,
                       "zadd": 2, "xadd": 1, "zcard": 0, "llen": 0, "hget": 0}, ran
    # the queue's cap (3) is reached: refused, the push taken back, nothing of it stored
    keys = store.redis.dbsize()
    resp = client.post("/jobs", json={"task": "echo", "params": {"n": 3}})
    assert resp.status_code == 429, resp.get_json()
    assert store.redis.llen(store.keys.queue) == 3 and store.redis.zcard(store.keys.index) == 3
    assert store.redis.dbsize() == keys and store.redis.get(store.keys.seq) == b"3"
