"""Schedules under the real server: the tickers of the gunicorn processes fire declared schedules with no
worker running (worker pools scaled to zero), each tick once; a bad schedules file stops the start."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import redis
from support.procs import wait_for

from api.stack import ApiStack, http


def test_api_processes_fire_declared_schedules_each_tick_once_without_workers(redis_url: str, tmp_path: Path) -> None:
    declared = tmp_path / "schedules.json"
    declared.write_text(json.dumps([
        {"name": "every-second", "task": "echo", "cron": "* * * * * *", "params": {"x": 1}, "catchup": "all"},
        {"name": "acme-nightly", "tenant": "acme", "task": "echo", "cron": "0 2 * * *", "timezone": "Asia/Tokyo"},
    ]))
    stack = ApiStack(tmp_path / "stack", redis_url, workers=0, web_concurrency=3,
                     extra_env={"JOBS_SCHEDULES_FILE": str(declared), "JOBS_SCHEDULE_TICK_SECONDS": "0.05"})
    stack.start()
    try:
        status, _, body = http("GET", stack.url + "/schedules/every-second")
        assert status == 200 and json.loads(body)["cron"] == "* * * * * *"
        assert http("GET", stack.url + "/schedules/acme-nightly")[0] == 404  # another tenant's
        client = redis.Redis.from_url(redis_url)
        assert client.zcard(f"{stack.namespace}:schedules:owner:acme") == 1
        wait_for(lambda: json.loads(http("GET", stack.url + "/schedules/every-second")[2])["fired"] >= 4,
                 timeout=20, what="four ticks fired by the API processes")
        # three processes applied the same file: one version, never re-created
        assert client.hget(f"{stack.namespace}:schedule:default:every-second", "version") == b"1"
    finally:
        stack.stop_api()
    entries = [e.decode() for e in client.lrange(f"hotqueue:{stack.namespace}", 0, -1)]
    ticks = sorted(int(client.hget(f"{stack.namespace}:job:{e.strip(chr(34))}", "tick")) for e in entries)
    assert Counter(entries).most_common(1)[0][1] == 1
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), "a tick missing or enqueued twice"
    stack.stop()


def test_a_bad_schedules_file_stops_the_start_with_a_clear_message(redis_url: str, tmp_path: Path) -> None:
    declared = tmp_path / "schedules.json"
    declared.write_text(json.dumps([{"name": "x", "task": "echo", "cron": "not cron"}]))
    stack = ApiStack(tmp_path / "stack", redis_url, workers=0, extra_env={"JOBS_SCHEDULES_FILE": str(declared)})
    stack.start_api()
    assert stack.api is not None
    try:
        stack.api.wait(30)
    finally:
        stack.stop()
    assert stack.api.returncode != 0
    assert "schedule 'x'" in stack.error_log.read_text() and "/cron" in stack.error_log.read_text()
