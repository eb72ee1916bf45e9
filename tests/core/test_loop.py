"""``jobs_core.loop.PassLoop``: the loop the schedule ticker and the webhook dispatcher share — it survives a
Redis crash and any other error in a pass, pauses as told, and stops on request or on SIGTERM."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
from jobs_core.bulk_store import BulkRunner
from jobs_core.config import Settings
from jobs_core.loop import PassLoop
from jobs_core.schedules import ScheduleSpec
from jobs_core.store import JobStore
from jobs_core.ticker import Ticker
from jobs_core.webhooks import Dispatcher
from support.procs import service_env, stop, wait_for
from support.redis_server import RedisServer

log = logging.getLogger("tests.loop")


class Counting(PassLoop):
    """Each pass INCRs a counter in Redis; ``fail`` (if set) is raised by the next pass instead."""

    def __init__(self, client: redis.Redis, *, interval: float = 0.01, retry_seconds: float | None = None,
                 stop_event: threading.Event | None = None) -> None:
        super().__init__("test-loop", "counting", log, interval=interval, retry_seconds=retry_seconds,
                         stop_event=stop_event)
        self.client = client
        self.fail: Exception | None = None

    def step(self) -> float | None:
        if self.fail is not None:
            error, self.fail = self.fail, None
            raise error
        self.client.incr("passes")
        return None


def passes(client: redis.Redis) -> int:
    return int(client.get("passes") or 0)


def test_the_loop_outlives_a_redis_crash_and_resumes_when_it_is_back(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = private_redis.client()
    loop = Counting(private_redis.client(), retry_seconds=0.05)
    loop.start()
    try:
        wait_for(lambda: passes(client) >= 3, what="passes before the crash")
        with caplog.at_level(logging.WARNING, logger="tests.loop"):
            private_redis.kill()
            wait_for(lambda: loop.failures >= 2, what="passes that met the crash")
            assert loop.is_alive()
            private_redis.start()  # empty (no persistence): the counter starts again
            wait_for(lambda: passes(private_redis.client()) >= 3, what="passes after Redis came back")
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert warnings and all(m.startswith("counting: redis unavailable (") for m in warnings), warnings
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a Redis outage is no traceback"
    finally:
        loop.stop()
    assert not loop.is_alive()


def test_any_other_error_is_logged_with_its_traceback_and_the_next_pass_runs(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = private_redis.client()
    loop = Counting(private_redis.client())
    loop.fail = ValueError("a bug in one pass")
    with caplog.at_level(logging.ERROR, logger="tests.loop"):
        loop.start()
        try:
            wait_for(lambda: passes(client) >= 2, what="passes after the failed one")
        finally:
            loop.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].getMessage() == "counting pass failed", errors
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], ValueError)
    assert loop.failures == 1


def test_a_failed_pass_waits_retry_seconds_and_stop_cuts_the_wait_short(private_redis: RedisServer) -> None:
    client = private_redis.client()
    loop = Counting(private_redis.client(), interval=0.0, retry_seconds=3600.0)
    loop.fail = redis.ConnectionError("gone")
    loop.start()
    try:
        wait_for(lambda: loop.failures == 1, what="the failed pass")
        stopped = threading.Event()
        threading.Timer(0.5, stopped.set).start()
        stopped.wait()
        assert passes(client) == 0, "the loop did not wait retry_seconds after the failed pass"
    finally:
        loop.stop(timeout=10)
    assert not loop.is_alive(), "stop() did not end the pause"


def test_a_pass_that_returns_zero_runs_the_next_at_once_and_none_waits_interval(private_redis: RedisServer) -> None:
    client = private_redis.client()

    class Returning(Counting):
        def __init__(self, wait: float | None) -> None:
            super().__init__(private_redis.client(), interval=3600.0)
            self.wait = wait

        def step(self) -> float | None:
            super().step()
            return self.wait

    eager, patient = Returning(0.0), Returning(None)
    eager.start()
    try:
        wait_for(lambda: passes(client) >= 5, what="back-to-back passes")
    finally:
        eager.stop(timeout=10)
    client.delete("passes")
    patient.start()
    try:
        wait_for(lambda: passes(client) == 1, what="the first pass")
        threading.Event().wait(0.5)
        assert passes(client) == 1, "the second pass did not wait for interval"
    finally:
        patient.stop(timeout=10)
    assert not eager.is_alive() and not patient.is_alive()


def test_ticker_dispatcher_and_bulk_runner_are_pass_loops(store: JobStore) -> None:
    """The three daemons of an API process run on the shared loop (their behaviour: tests/core/test_webhooks.py,
    tests/core/test_schedules.py, tests/core/test_bulk.py, tests/reliability/test_webhooks.py, test_flows.py
    and test_bulk_takeover.py)."""
    ticker, dispatcher, bulk = Ticker(store, interval=0.7), Dispatcher(store, "d1"), BulkRunner(store, 10)
    assert isinstance(ticker, PassLoop) and isinstance(dispatcher, PassLoop) and isinstance(bulk, PassLoop)
    assert (ticker.interval, ticker.retry_seconds) == (0.7, None)  # after an error too: the tick interval
    assert (dispatcher.interval, dispatcher.retry_seconds) == (0.0, 1.0)  # its pass blocks on the outbox
    assert (bulk.interval, bulk.retry_seconds, bulk.label) == (2.0, None, "bulk runner")
    assert ticker.daemon and dispatcher.daemon and bulk.daemon


def test_the_process_stop_event_ends_a_loop_given_it(private_redis: RedisServer) -> None:
    """The bulk runner's loop ends on the API process's own shutdown event (set by its stop signal), the same
    event that stops the bulk actions it runs after their current chunk."""
    client = private_redis.client()
    shutdown = threading.Event()
    loop = Counting(client, interval=3600.0, stop_event=shutdown)
    loop.start()
    try:
        wait_for(lambda: passes(client) == 1, what="the first pass, at start")
        shutdown.set()
        loop.join(10)
        assert not loop.is_alive() and loop.stopping, "the process's stop event did not end the loop's wait"
    finally:
        loop.stop()
    runner = BulkRunner(JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="loop")), 10,
                        interval=3600.0, shutdown=shutdown)
    runner.start()
    runner.join(10)
    assert not runner.is_alive(), "a bulk runner started after the process's stop signal kept running"


def test_standalone_ticker_fires_then_stops_on_sigterm(settings: Settings, tmp_path: Path) -> None:
    store = JobStore.from_settings(settings)
    store.put_schedule("default", "s", ScheduleSpec(task="echo", cron="* * * * * *"))
    env = service_env(settings.redis_url, settings.key_prefix, settings.queue, {"JOBS_SCHEDULE_TICK_SECONDS": "0.05"})
    proc = subprocess.Popen([sys.executable, "-m", "jobs_core.ticker"], env=env, stderr=subprocess.STDOUT,
                            stdout=(tmp_path / "ticker.log").open("wb"))
    try:
        wait_for(lambda: store.get_schedule("default", "s").fired >= 1, timeout=60, interval=0.2, what="a tick")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0, (tmp_path / "ticker.log").read_text()
    finally:
        stop(proc)
