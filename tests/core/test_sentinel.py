"""Sentinel connections and replicated acknowledgement, on a real Valkey primary + 2 replicas + 3 sentinels.

One cluster serves the module (starting it is the slow part); tests that freeze replicas thaw them, and
the failover test runs last.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from jobs_core.config import Settings, parse_sentinels
from jobs_core.errors import ConfigError, NotReplicated
from jobs_core.model import JobStatus, Submission
from jobs_core.store import Finish, JobStore
from support.chart_ha import render_sentinel_config
from support.redis_server import RedisServer
from support.valkey_ha import SentinelCluster

T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    # started from the configuration the Helm chart renders (redis.mode=sentinel), a short down-after
    chart = render_sentinel_config({"downAfterMilliseconds": 2000, "failoverTimeoutMilliseconds": 10000})
    c = SentinelCluster.from_chart(tmp_path_factory.mktemp("ha"), chart).start()
    try:
        yield c
    finally:
        c.stop()


def _settings(cluster: SentinelCluster, **env: str) -> Settings:
    ns = f"ha{secrets.token_hex(4)}"
    return Settings.from_env({**cluster.env(), "JOBS_KEY_PREFIX": ns, "JOBS_QUEUE": ns, **env})


def test_sentinel_settings_parse_and_reject_bad_values() -> None:
    s = Settings.from_env({"REDIS_SENTINELS": "s0:26379, [::1]:26380", "REDIS_SENTINEL_MASTER": "main",
                           "REDIS_SENTINEL_PASSWORD": "pw", "REDIS_SENTINEL_TLS": "true",
                           "JOBS_ACK_REPLICAS": "2", "JOBS_ACK_TIMEOUT_SECONDS": "0.5"})
    assert s.redis_sentinels == (("s0", 26379), ("::1", 26380))
    assert (s.redis_sentinel_master, s.redis_sentinel_password, s.redis_sentinel_tls) == ("main", "pw", True)
    assert (s.ack_replicas, s.ack_timeout_seconds, s.redis_tls) == (2, 0.5, False)
    assert Settings.from_env({"REDIS_URL": "rediss://h:1/0"}).redis_sentinel_tls is True
    for env in ({"REDIS_SENTINELS": "s0"}, {"REDIS_SENTINELS": "s0:0"}, {"REDIS_SENTINELS": "s0:x"},
                {"JOBS_ACK_REPLICAS": "-1"}, {"JOBS_ACK_TIMEOUT_SECONDS": "0"}, {"JOBS_ACK_TIMEOUT_SECONDS": "30"},
                {"REDIS_SENTINEL_TLS": "maybe"}, {"REDIS_SENTINEL_MASTER": "bad name"}):
        with pytest.raises(ConfigError):
            Settings.from_env(env)
    assert parse_sentinels("") == ()


def test_store_through_sentinel_with_replicated_ack(cluster: SentinelCluster) -> None:
    settings = _settings(cluster, JOBS_ACK_REPLICAS="2")
    store = JobStore.from_settings(settings)
    job, created = store.enqueue("echo", {"n": 1}, idempotency_key="k1")
    assert created
    # the 202 was answered after WAITAOF: both replicas already hold the job
    for replica in cluster.replicas():
        assert replica.client().hget(settings.keys.job(job.id), "status") == b"queued"
    [claimed] = store.claim("w1", 1)
    assert store.finish("w1", claimed.id, claimed.attempt, "failed") == "failed"
    assert store.retry(job.id).status is JobStatus.QUEUED
    assert store.cancel(job.id).status is JobStatus.CANCELLED


def test_replicated_enqueue_reloads_a_flushed_script_and_stores_each_submission_once(
        cluster: SentinelCluster) -> None:
    """The acknowledged enqueue (one script call + fence + WAIT + WAITAOF in one pipeline) meeting NOSCRIPT,
    as after a failover to a replica that never loaded it: loaded, sent again, each job stored once."""
    settings = _settings(cluster, JOBS_ACK_REPLICAS="2")
    store = JobStore.from_settings(settings)
    store.enqueue("echo", {"warm": 1})
    cluster.primary().client().script_flush()
    jobs, created = store.enqueue_many([Submission("echo", {"n": i}) for i in range(3)], owner="default")
    job, _ = store.enqueue("echo", {"n": 3})
    assert created and [j.params["n"] for j in jobs] == [0, 1, 2]
    ids = [j.id for j in jobs] + [job.id]
    for replica in cluster.replicas():  # confirmed on both before the answer
        assert replica.client().llen(settings.keys.queue) == 1 + 4
    assert [x.decode().strip('"') for x in store.redis.lrange(settings.keys.queue, 1, -1)] == ids


def test_unconfirmed_write_raises_and_the_same_key_never_makes_a_second_job(cluster: SentinelCluster) -> None:
    settings = _settings(cluster, JOBS_ACK_REPLICAS="1", JOBS_ACK_TIMEOUT_SECONDS="0.3")
    store = JobStore.from_settings(settings)
    with cluster.replicas_frozen():
        with pytest.raises(NotReplicated):
            store.enqueue("echo", {"n": 1}, idempotency_key="order-7")
        with pytest.raises(NotReplicated):  # a replay of the stored job is not confirmed either
            store.enqueue("echo", {"n": 1}, idempotency_key="order-7")
    _, created = _until_confirmed(lambda: store.enqueue("echo", {"n": 1}, idempotency_key="order-7"))
    assert not created  # the same job: the first call had stored it on the primary
    assert cluster.client().zcard(settings.keys.index) == 1


def test_worker_finish_unconfirmed_raises(cluster: SentinelCluster) -> None:
    settings = _settings(cluster, JOBS_ACK_REPLICAS="1", JOBS_ACK_TIMEOUT_SECONDS="0.3")
    store = JobStore.from_settings(settings)
    _until_confirmed(lambda: store.enqueue("echo", {}))  # replicas frozen by the test before may still catch up
    [claimed] = store.claim("w1", 1)
    with cluster.replicas_frozen(), pytest.raises(NotReplicated):
        store.finish_and_claim("w1", [_finish(claimed.id, claimed.attempt)], 0)


def _until_confirmed(call: Callable[[], T]) -> T:
    """Repeat ``call`` while it raises NotReplicated (thawed replicas take a moment to acknowledge again)."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return call()
        except NotReplicated:
            if time.monotonic() > deadline:
                raise


def _finish(job_id: str, attempt: int) -> Finish:
    return Finish(job_id, attempt, "succeeded")


def test_replicated_ack_needs_waitaof(tmp_path: Path) -> None:
    """Redis 7.0 (the machine's) has no WAITAOF: a clear configuration error, not a silent 202."""
    server = RedisServer(tmp_path / "r", appendfsync="always").start()
    try:
        store = JobStore.from_settings(Settings(redis_url=server.url, ack_replicas=1, key_prefix="a", queue="a"))
        with pytest.raises(ConfigError, match="WAITAOF"):
            store.enqueue("echo", {})
    finally:
        server.stop()


def test_failover_found_by_itself_nothing_acknowledged_lost(cluster: SentinelCluster) -> None:
    """SENTINEL FAILOVER COORDINATED (a planned switch): the store finds the new primary by itself (READONLY
    or a reset on the old one, NOSCRIPT on the new one, whose script cache is empty) and every acknowledged
    job is there."""
    settings = _settings(cluster, JOBS_ACK_REPLICAS="1")
    store = JobStore.from_settings(settings)
    before = [_until_confirmed(lambda: store.enqueue("echo", {}))[0].id for _ in range(20)]
    old = cluster.primary_address()
    cluster.sentinels[0].client().execute_command("SENTINEL", "FAILOVER", cluster.master_name, "COORDINATED")
    deadline = time.monotonic() + 30
    accepted, errors = [], 0
    while time.monotonic() < deadline and (cluster.primary_address() == old or len(accepted) < 20):
        try:
            accepted.append(store.enqueue("echo", {"n": "after"})[0].id)
        except (redis.ConnectionError, NotReplicated):
            errors += 1  # during the switch: a 503 for the API, retried by the client
            time.sleep(0.05)
    agreed = cluster.wait_sentinels_agree()
    assert agreed != old
    assert len(accepted) >= 20
    cluster.wait_synced()
    new_primary = cluster.client()
    missing = [i for i in [*before, *accepted] if not new_primary.exists(settings.keys.job(i))]
    assert not missing, (len(missing), len(before), len(accepted), errors)
    # SENTINEL MASTERS (what redis-py asks) names the new primary once the failover has ended
    deadline = time.monotonic() + 30
    while store.redis.connection_pool.get_master_address() != agreed and time.monotonic() < deadline:  # type: ignore[attr-defined]
        time.sleep(0.1)
    assert store.redis.connection_pool.get_master_address() == agreed  # type: ignore[attr-defined]


def test_api_answers_503_problem_while_unconfirmed_then_202_for_the_same_key(cluster: SentinelCluster) -> None:
    from jobs_api.app import create_app
    from jobs_core.model import TaskInfo

    settings = _settings(cluster, JOBS_ACK_REPLICAS="2", JOBS_ACK_TIMEOUT_SECONDS="0.3")
    store = JobStore.from_settings(settings)
    _until_confirmed(lambda: store.publish_tasks([TaskInfo("echo", "Echo.", {"type": "object"})]))
    client = create_app({"JOBS_SETTINGS": settings, "JOBS_STORE": store, "TESTING": True}).test_client()
    submit = {"json": {"task": "echo", "params": {"x": 1}}, "headers": {"Idempotency-Key": "ha-1"}}
    cluster.wait_stable()
    replica = cluster.replicas()[0]
    replica.freeze()
    try:
        resp = client.post("/jobs", **submit)
    finally:
        replica.thaw()
    assert resp.status_code == 503, resp.get_data()
    assert resp.content_type == "application/problem+json"
    assert resp.headers["Retry-After"]
    assert "Idempotency-Key" in resp.get_json()["detail"]
    deadline = time.monotonic() + 15
    while (resp := client.post("/jobs", **submit)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert resp.status_code == 202 and resp.headers.get("Idempotent-Replayed") == "true"
    assert cluster.client().zcard(settings.keys.index) == 1
