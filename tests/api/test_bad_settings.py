"""A bad value for any setting in the README's table stops every real entry point that reads it
(`jobs-api`, `jobs-worker`, `make run` = scripts/run_local.py, the `jobs` CLI) with exit code 2 and one
line on stderr naming the setting: never a traceback, never a half-started stack.

The settings come from the README's table itself, so a setting documented later without a bad value here
fails `test_every_documented_setting_has_a_bad_value`.

`make run` checks the settings with the very function `jobs-api` calls (`check_settings` ->
`jobs_api.cli.check_startup`), so `make test` runs its column only for what run_local reads or reports
itself (`MAKE_RUN_SHORT`) plus a sample for each part of the shared check; `make reliability`
(`RELIABILITY_PROFILE=full`) runs every setting through `make run` as well.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability import report

from api.stack import BIN, ROOT, free_port

README = ROOT / "README.md"
RUN_LOCAL = ROOT / "scripts" / "run_local.py"

#: One bad value per documented setting (several settings when one needs a partner to be valid).
BAD: dict[str, dict[str, str]] = {
    "REDIS_URL": {"REDIS_URL": "http://127.0.0.1:6379"},
    "REDIS_PASSWORD": {"REDIS_PASSWORD": "secret-from-a-file\n"},
    "REDIS_TLS_CA_FILE": {"REDIS_TLS_CA_FILE": "/nonexistent/ca.pem"},
    "REDIS_SENTINELS": {"REDIS_SENTINELS": "sentinel-without-a-port"},
    "REDIS_SENTINEL_MASTER": {"REDIS_SENTINEL_MASTER": "my master"},
    "REDIS_SENTINEL_PASSWORD": {"REDIS_SENTINEL_PASSWORD": "sentinel-secret\r\n"},
    "REDIS_TLS": {"REDIS_TLS": "maybe"},
    "REDIS_SENTINEL_TLS": {"REDIS_SENTINEL_TLS": "sometimes"},
    "JOBS_ACK_REPLICAS": {"JOBS_ACK_REPLICAS": "-1"},
    "JOBS_ACK_TIMEOUT_SECONDS": {"JOBS_ACK_TIMEOUT_SECONDS": "10"},
    "JOBS_QUEUE": {"JOBS_QUEUE": "my queue"},
    "JOBS_QUEUES": {"JOBS_QUEUES": "gpu,my queue"},
    "JOBS_HISTORY_SECONDS": {"JOBS_HISTORY_SECONDS": "30"},
    "JOBS_TASK_RETENTION_SECONDS": {"JOBS_TASK_RETENTION_SECONDS": "0"},
    "JOBS_KEY_PREFIX": {"JOBS_KEY_PREFIX": "a/b c"},
    "JOBS_LEASE_SECONDS": {"JOBS_LEASE_SECONDS": "nan"},
    "JOBS_REAPER_INTERVAL_SECONDS": {"JOBS_REAPER_INTERVAL_SECONDS": "soon"},
    "JOBS_DRAIN_SECONDS": {"JOBS_DRAIN_SECONDS": "-1"},
    "JOBS_RESULT_TTL_SECONDS": {"JOBS_RESULT_TTL_SECONDS": "0"},
    "JOBS_RECORD_TTL_SECONDS": {"JOBS_RECORD_TTL_SECONDS": "1.5"},
    "JOBS_IDEMPOTENCY_TTL_SECONDS": {"JOBS_IDEMPOTENCY_TTL_SECONDS": "forever"},
    "JOBS_MAX_RESULT_BYTES": {"JOBS_MAX_RESULT_BYTES": "16MiB"},
    "JOBS_RETRY_BACKOFF_SECONDS": {"JOBS_RETRY_BACKOFF_SECONDS": "-0.5"},
    "JOBS_RETRY_BACKOFF_MAX_SECONDS": {"JOBS_RETRY_BACKOFF_MAX_SECONDS": "inf"},
    "JOBS_DEFAULT_MAX_ATTEMPTS": {"JOBS_DEFAULT_MAX_ATTEMPTS": "1000"},
    "JOBS_DEFAULT_TIMEOUT_SECONDS": {"JOBS_DEFAULT_TIMEOUT_SECONDS": "0"},
    "JOBS_TASK_MODULES": {"JOBS_TASK_MODULES": "no_such_task_module_for_this_test"},
    "JOBS_LOG_LEVEL": {"JOBS_LOG_LEVEL": "LOUD"},
    "JOBS_CONCURRENCY": {"JOBS_CONCURRENCY": "0"},
    "JOBS_WORKER_METRICS_PORT": {"JOBS_WORKER_METRICS_PORT": "99999"},
    "JOBS_WORKER_HEALTH_FILE": {"JOBS_WORKER_HEALTH_FILE": "/nonexistent-dir/worker.alive"},
    "POD_NAME": {"POD_NAME": "Not A Pod", "POD_NAMESPACE": "jobs"},
    "POD_NAMESPACE": {"POD_NAME": "worker-1", "POD_NAMESPACE": "Jobs_NS"},
    "JOBS_BIND": {"JOBS_BIND": "localhost"},
    "WEB_CONCURRENCY": {"WEB_CONCURRENCY": "zero"},
    "JOBS_API_THREADS": {"JOBS_API_THREADS": "0"},
    "JOBS_API_STREAMS": {"JOBS_API_STREAMS": "0"},
    "JOBS_API_GRACEFUL_TIMEOUT": {"JOBS_API_GRACEFUL_TIMEOUT": "-5"},
    "JOBS_API_KEYS": {"JOBS_API_KEYS": "no-colon-here"},
    "JOBS_API_KEYS_FILE": {"JOBS_API_KEYS_FILE": "/nonexistent/api-keys"},
    "JOBS_MAX_BODY_BYTES": {"JOBS_MAX_BODY_BYTES": "1MB"},
    "JOBS_PREFER_WAIT_MAX_SECONDS": {"JOBS_PREFER_WAIT_MAX_SECONDS": "601"},
    "JOBS_MAX_PENDING": {"JOBS_MAX_PENDING": "0"},
    "JOBS_MAX_PENDING_PER_TENANT": {"JOBS_MAX_PENDING_PER_TENANT": "-1"},
    "PROMETHEUS_MULTIPROC_DIR": {"PROMETHEUS_MULTIPROC_DIR": "/dev/null/metrics"},
    "GUNICORN_CMD_ARGS": {"GUNICORN_CMD_ARGS": "--workers=zero"},
    "JOBS_UI_SECRET": {"JOBS_UI_SECRET": "too-short"},
    "JOBS_AUTH_FAILURE_LIMIT": {"JOBS_AUTH_FAILURE_LIMIT": "-1"},
    "JOBS_AUTH_FAILURE_WINDOW_SECONDS": {"JOBS_AUTH_FAILURE_WINDOW_SECONDS": "0"},
    "JOBS_TRUSTED_PROXY_HOPS": {"JOBS_TRUSTED_PROXY_HOPS": "6"},
    "JOBS_FAST_SUBMIT": {"JOBS_FAST_SUBMIT": "sometimes"},
    "JOBS_UI_SESSION_SECONDS": {"JOBS_UI_SESSION_SECONDS": "5"},
    "JOBS_UI_BULK_MAX": {"JOBS_UI_BULK_MAX": "0"},
    "JOBS_UI_BULK_SCAN": {"JOBS_UI_BULK_SCAN": "many"},
    "JOBS_UI_BULK_RATE": {"JOBS_UI_BULK_RATE": "0"},
    "JOBS_SCHEDULER": {"JOBS_SCHEDULER": "sometimes"},
    "JOBS_SCHEDULE_TICK_SECONDS": {"JOBS_SCHEDULE_TICK_SECONDS": "0"},
    "JOBS_SCHEDULE_GRACE_SECONDS": {"JOBS_SCHEDULE_GRACE_SECONDS": "-1"},
    "JOBS_WEBHOOKS": {"JOBS_WEBHOOKS": "perhaps"},
    "JOBS_WEBHOOK_ALLOW_HTTP": {"JOBS_WEBHOOK_ALLOW_HTTP": "2"},
    "JOBS_WEBHOOK_ALLOW_PRIVATE": {"JOBS_WEBHOOK_ALLOW_PRIVATE": "lan"},
    "JOBS_WEBHOOK_TIMEOUT_SECONDS": {"JOBS_WEBHOOK_TIMEOUT_SECONDS": "600"},
    "JOBS_WEBHOOK_RETRY_SECONDS": {"JOBS_WEBHOOK_RETRY_SECONDS": "0"},
    "JOBS_WEBHOOK_DEADLINE_SECONDS": {"JOBS_WEBHOOK_DEADLINE_SECONDS": "never"},
    "JOBS_WEBHOOK_SECRET_GRACE_SECONDS": {"JOBS_WEBHOOK_SECRET_GRACE_SECONDS": "-1"},
    "JOBS_MAX_SCHEDULES_PER_TENANT": {"JOBS_MAX_SCHEDULES_PER_TENANT": "0"},
    "JOBS_SCHEDULES_FILE": {"JOBS_SCHEDULES_FILE": "/nonexistent/schedules.json"},
    "JOBS_TRACE_PARAMS": {"JOBS_TRACE_PARAMS": "maybe"},
    "OTEL_EXPORTER_OTLP_ENDPOINT": {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
    "OTEL_TRACES_EXPORTER": {"OTEL_TRACES_EXPORTER": "zipkin"},
    "JOBS_URL": {"JOBS_URL": "ftp://127.0.0.1:8000"},
    "JOBS_API_KEY": {"JOBS_API_KEY": "key-with\na-newline"},
    "JOBS_RELOAD": {"JOBS_RELOAD": "maybe"},
}

#: Settings for which every value is valid (named here with the reason, so none is forgotten).
ANY_VALUE = {"OTEL_SERVICE_NAME": "any string names the service in traces"}

#: Settings `make run` sets itself for each worker, so a value from the environment is not used there.
MANAGED_BY_MAKE_RUN = {"JOBS_WORKER_HEALTH_FILE": "each worker gets its own file under .run/"}


#: The `make run` cases `make test` keeps (the rest run in the full profile): settings run_local reads
#: itself, the two it learns of from a worker's exit (its forwarding path), and a sample of the shared check.
MAKE_RUN_SHORT = {
    "JOBS_RELOAD": "read only by run_local (reload_enabled)",
    "JOBS_BIND": "run_local adds its own rule (HOST:PORT, no unix:) and its hint for a busy port",
    "JOBS_WORKER_METRICS_PORT": "run_local hands each worker its own port from it",
    "JOBS_DRAIN_SECONDS": "run_local sets its own default before the check",
    "REDIS_URL": "run_local pings it itself, or starts its own Redis when unset",
    "REDIS_PASSWORD": "run_local's own ping sends it (a secret: never echoed)",
    "JOBS_TASK_MODULES": "passes the shared check; a worker refuses it and run_local forwards its line",
    "PROMETHEUS_MULTIPROC_DIR": "passes the shared check; the API refuses it and run_local forwards its line",
    "JOBS_LEASE_SECONDS": "sample of the shared check: Settings.from_env",
    "JOBS_UI_SECRET": "sample of the shared check: ConsoleConfig.from_env (a secret: never echoed)",
    "GUNICORN_CMD_ARGS": "sample of the shared check: gunicorn's options",
    "JOBS_SCHEDULES_FILE": "sample of the shared check: the declared schedules file",
}


def documented_settings() -> dict[str, str]:
    """Setting name -> its 'used by' column, from the README's Settings table."""
    text = README.read_text()
    start = text.index("## Settings")
    table = text[start : text.index("\n## ", start + 1)]
    settings = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
            settings[name] = cells[2]
    return settings


def entry_points(used_by: str, name: str) -> list[str]:
    """The commands that read a setting, from its 'used by' column."""
    points = []
    if re.search(r"\bAPI\b", used_by):
        points.append("jobs-api")
    if "worker" in used_by:
        points.append("jobs-worker")
    if ("jobs-api" in points or "jobs-worker" in points or "make run" in used_by) and name not in MANAGED_BY_MAKE_RUN:
        points.append("make run")
    if "`jobs` CLI" in used_by:
        points.append("jobs")
    return points


CASES = [(name, point) for name, used_by in documented_settings().items() if name not in ANY_VALUE
         for point in entry_points(used_by, name)]
FULL_ONLY = pytest.mark.skipif(not report.FULL, reason="make run shares jobs-api's check: every setting runs through "
                               "it in the full profile (make reliability), MAKE_RUN_SHORT in make test")


def _case(name: str, point: str) -> object:
    marks = [FULL_ONLY] if point == "make run" and name not in MAKE_RUN_SHORT else []
    return pytest.param(name, point, marks=marks, id=f"{name}-{point.replace(' ', '_')}")


def test_every_documented_setting_has_a_bad_value() -> None:
    documented = documented_settings()
    assert len(documented) >= 35, documented
    assert sorted(set(documented) - set(BAD) - set(ANY_VALUE)) == [], "add a bad value for each new setting to BAD"
    assert sorted(set(BAD) - set(documented)) == [], "BAD names settings the README does not document"
    assert all(entry_points(used_by, name) for name, used_by in documented.items())
    make_run = {n for n, p in CASES if p == "make run"}
    assert make_run >= set(MAKE_RUN_SHORT), "MAKE_RUN_SHORT names a setting make run does not read"


def test_make_run_checks_settings_with_the_shared_check() -> None:
    """What lets make test sample the `make run` column: run_local's check is jobs-api's check_startup."""
    source = RUN_LOCAL.read_text()
    assert "from jobs_api.cli import check_startup" in source and "check_startup([], env)" in source
    main = source[source.index("def main(") :]
    assert main.index("check_settings(env)") < main.index("stack.start_redis()")  # checked before anything starts


@pytest.fixture
def base_env(redis_url: str, namespace: str, tmp_path: Path) -> dict[str, str]:
    """A working configuration (the test Redis, a free port) that each case spoils with one bad value."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JOBS_", "REDIS_", "PROMETHEUS_", "GUNICORN_", "POD_", "WEB_", "OTEL_"))}
    env.update({"REDIS_URL": redis_url, "JOBS_KEY_PREFIX": namespace, "JOBS_QUEUE": namespace,
                "JOBS_BIND": f"127.0.0.1:{free_port()}", "JOBS_WORKER_HEALTH_FILE": str(tmp_path / "alive"),
                "TMPDIR": str(tmp_path)})
    return env


def command(point: str, tmp_path: Path) -> list[str]:
    return {
        "jobs-api": [str(BIN / "jobs-api")],
        "jobs-worker": [str(BIN / "jobs-worker")],
        "make run": [sys.executable, str(RUN_LOCAL), "--run-dir", str(tmp_path / "run")],
        "jobs": [str(BIN / "jobs"), "tasks"],
    }[point]


def run_until_exit(cmd: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """Run ``cmd``; a process that is still up after ``timeout`` (it accepted the bad value) is killed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"{cmd[0]} kept running with the bad value: {err[-2000:]}")
    return proc.returncode, out, err


def assert_one_line_error(code: int, err: str, name: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err[-3000:])
    assert len(lines) == 1, err[-3000:]
    assert name in lines[0] and "Traceback" not in err, lines[0]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name,point", [_case(n, p) for n, p in CASES])
def test_bad_value_is_one_line_and_exit_2(name: str, point: str, base_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(base_env, **BAD[name])
    code, _out, err = run_until_exit(command(point, tmp_path), env)
    assert_one_line_error(code, err, name)
    if name in ("REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD", "JOBS_API_KEY", "JOBS_UI_SECRET"):
        assert BAD[name][name].strip() not in err  # a secret is never echoed


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("point", ["jobs-api", "make run"])
def test_bind_address_in_use(point: str, busy_port: int, base_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(base_env, JOBS_BIND=f"127.0.0.1:{busy_port}")
    code, _out, err = run_until_exit(command(point, tmp_path), env)
    assert_one_line_error(code, err, "JOBS_BIND")
    assert "in use" in err


@pytest.mark.parametrize("point", ["jobs-worker", "make run"])
def test_worker_metrics_port_in_use(point: str, busy_port: int, base_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(base_env, JOBS_WORKER_METRICS_PORT=str(busy_port))
    code, _out, err = run_until_exit(command(point, tmp_path), env)
    assert_one_line_error(code, err, "JOBS_WORKER_METRICS_PORT")
    assert "in use" in err
