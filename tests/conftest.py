"""Fixtures shared by every test: a real Redis, an isolated key namespace per test, a store.

Tests import helpers as ``from support.procs import ...`` (tests/ is put on sys.path here).
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs_core.config import Settings
from jobs_core.store import JobStore
from support.redis_server import RedisServer

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis at 127.0.0.1:6379, or a private one when that is not running."""
    try:
        redis.Redis.from_url(DEFAULT_REDIS_URL, socket_connect_timeout=1).ping()
        yield DEFAULT_REDIS_URL
        return
    except redis.ConnectionError:
        pass
    server = RedisServer(tmp_path_factory.mktemp("redis-session")).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    """A fresh key prefix and queue name for one test; its keys are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = [*client.scan_iter(f"{name}:*", count=1000), *client.scan_iter(f"hotqueue:{name}*", count=1000)]
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


@pytest.fixture
def settings(redis_url: str, namespace: str) -> Settings:
    """Settings on the test's namespace, with short timings so recovery is quick in tests."""
    return Settings(redis_url=redis_url, key_prefix=namespace, queue=namespace, lease_seconds=3.0,
                    reaper_interval_seconds=0.5, retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.2)


@pytest.fixture
def store(settings: Settings) -> JobStore:
    """A JobStore on the test's namespace."""
    return JobStore.from_settings(settings)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own (free port, its own directory), stopped afterwards."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
