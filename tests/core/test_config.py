"""Settings from the environment: defaults, parsing, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs_core.config import ApiKey, Role, Settings
from jobs_core.errors import ConfigError
from jobs_core.keys import Keys


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert (s.queue, s.key_prefix, s.lease_seconds, s.drain_seconds) == ("jobs", "jobs", 15.0, 25.0)
    assert s.result_ttl_seconds == 7 * 24 * 3600 and s.max_result_bytes == 16 * 1024 * 1024
    assert s.api_keys == {} and s.worker_metrics_port is None
    assert s.keys == Keys("jobs", "jobs") and s.keys.queue == "hotqueue:jobs"


def test_values_are_read() -> None:
    s = Settings.from_env({
        "REDIS_URL": "rediss://:pw@redis.example:6380/2", "REDIS_PASSWORD": "override",
        "JOBS_QUEUE": "reports", "JOBS_KEY_PREFIX": "acme", "JOBS_LEASE_SECONDS": "30",
        "JOBS_TASK_MODULES": "a.tasks, b ,", "JOBS_WORKER_METRICS_PORT": "9100", "JOBS_CONCURRENCY": "4",
        "JOBS_API_KEYS": "alice:k1,bob:k2", "JOBS_LOG_LEVEL": "debug",
    })
    assert s.redis_password == "override" and s.redis_url.startswith("rediss://")
    assert s.keys.queue == "hotqueue:reports" and s.keys.inflight == "acme:reports:inflight"
    assert s.lease_seconds == 30.0 and s.concurrency == 4 and s.worker_metrics_port == 9100
    assert s.task_modules == ("a.tasks", "b") and s.log_level == "DEBUG"
    assert s.api_keys == {"k1": ApiKey("alice", Role.OPERATOR), "k2": ApiKey("bob", Role.OPERATOR)}


def test_queues_consumed_in_order_and_the_default_queue() -> None:
    assert Settings.from_env({}).worker_queues == ("jobs",)
    assert Settings.from_env({"JOBS_QUEUE": "reports"}).worker_queues == ("reports",)  # JOBS_QUEUE keeps working
    s = Settings.from_env({"JOBS_QUEUES": " gpu, jobs "})
    assert s.worker_queues == ("gpu", "jobs") and s.queue == "gpu"
    s = Settings.from_env({"JOBS_QUEUES": "gpu,jobs", "JOBS_QUEUE": "jobs"})
    assert s.worker_queues == ("gpu", "jobs") and s.queue == "jobs"
    for bad, message in (("gpu,gpu", "given twice"), ("a:b", "queue names are")):
        with pytest.raises(ConfigError, match=message):
            Settings.from_env({"JOBS_QUEUES": bad})


def test_api_keys_file(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("# tenants\nalice:secret-1\n\nbob:secret-2\n")
    s = Settings.from_env({"JOBS_API_KEYS_FILE": str(f), "JOBS_API_KEYS": "carol:k3"})
    assert s.api_keys == {"secret-1": ApiKey("alice"), "secret-2": ApiKey("bob"), "k3": ApiKey("carol")}


def test_api_keys_roles() -> None:
    s = Settings.from_env({"JOBS_API_KEYS": "a:k1:viewer, a:k2:operator ,ops:k3:admin,b:k4,c:k5:Admin"})
    assert s.api_keys == {
        "k1": ApiKey("a", Role.VIEWER), "k2": ApiKey("a", Role.OPERATOR), "k3": ApiKey("ops", Role.ADMIN),
        "k4": ApiKey("b", Role.OPERATOR), "k5": ApiKey("c", Role.ADMIN),
    }
    assert [r for r in Role if Role.OPERATOR.allows(r)] == [Role.VIEWER, Role.OPERATOR]
    assert Role.ADMIN.allows(Role.ADMIN) and not Role.VIEWER.allows(Role.OPERATOR)


@pytest.mark.parametrize("env,message", [
    ({"REDIS_URL": "http://localhost"}, "REDIS_URL must start with"),
    ({"REDIS_URL": "redis://"}, "REDIS_URL has no host"),
    ({"JOBS_LEASE_SECONDS": "0.5"}, "JOBS_LEASE_SECONDS must be >= 1"),
    ({"JOBS_MAX_PENDING": "many"}, "JOBS_MAX_PENDING must be an integer"),
    ({"JOBS_QUEUE": "a b"}, "JOBS_QUEUE must be"),
    ({"JOBS_RESULT_TTL_SECONDS": "100", "JOBS_RECORD_TTL_SECONDS": "10"}, "JOBS_RECORD_TTL_SECONDS must be >="),
    ({"JOBS_LOG_LEVEL": "LOUD"}, "JOBS_LOG_LEVEL must be"),
    ({"JOBS_API_KEYS": "no-colon"}, "every entry must be tenant:key"),
    ({"JOBS_API_KEYS": "a:k:root"}, "the role after tenant:key: must be viewer, operator, admin"),
    ({"JOBS_API_KEYS": "a:k:"}, "the role after tenant:key: must be"),
    ({"JOBS_API_KEYS": "a:k:admin:x"}, "a key cannot hold ':'"),
    ({"JOBS_API_KEYS": "a::admin"}, "every entry must be tenant:key"),
    ({"JOBS_API_KEYS": "a:k:viewer,b:k:admin"}, "the same key is given twice"),
    ({"JOBS_API_KEYS": "a:k,b:k"}, "the same key is given twice"),
    ({"JOBS_API_KEYS_FILE": "/nonexistent/keys"}, "cannot read"),
])
def test_errors_are_clear(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize("entry", ["bad entry with supersecret", "a:supersecret:root", "a:supersecret:x:y"])
def test_errors_never_echo_a_key(entry: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"JOBS_API_KEYS": entry})
    assert "supersecret" not in str(info.value)


def test_a_key_in_both_sources_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "keys"
    f.write_text("alice:same-key:admin\n")
    with pytest.raises(ConfigError, match="a key is also in JOBS_API_KEYS") as info:
        Settings.from_env({"JOBS_API_KEYS_FILE": str(f), "JOBS_API_KEYS": "alice:same-key:viewer"})
    assert "same-key" not in str(info.value)
