"""The schedule ticker: a loop that fires due schedule ticks, safe to run in any number of processes.

Every API process runs one (a daemon thread started by gunicorn's ``post_worker_init``), because the API
is the part of a deployment that is always up: worker pools may be scaled to zero by KEDA, and a
schedule must fire precisely when no worker runs (its job is what scales them up again). No leader is
elected: each tick is enqueued exactly once by the ``fire_schedule`` script whichever ticker gets there
first; the others find the tick accounted for and change nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from jobs_core.store import JobStore

log = logging.getLogger("jobs_core.ticker")


def tick_once(store: JobStore, grace_ms: int, limit: int = 100) -> list[str]:
    """One pass: fire every due schedule (at most ``limit``); returns the job ids enqueued by this pass."""
    now = store.redis_now_ms()
    fired: list[str] = []
    for owner, name in store.due_schedules(now, limit):
        try:
            fired += store.fire_schedule(owner, name, now, grace_ms)
        except (ValueError, KeyError) as e:  # a definition that no longer parses: log it, keep ticking
            log.error("schedule %s/%s cannot be evaluated: %s", owner, name, e)
    return fired


class Ticker(threading.Thread):
    """A daemon thread calling :func:`tick_once` every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self,
        store: JobStore,
        interval: float = 1.0,
        grace_seconds: float = 30.0,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="jobs-ticker", daemon=True)
        self.store = store
        self._prepare = prepare
        self.interval = interval
        self.grace_ms = int(grace_seconds * 1000)
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Run ``prepare`` once (until it succeeds), then tick until stopped; Redis errors are logged and the
        next pass tries again."""
        while not self._stop_event.is_set():
            try:
                if self._prepare is not None:  # e.g. apply declared schedules; retried until it succeeds
                    self._prepare()
                    self._prepare = None
                fired = tick_once(self.store, self.grace_ms)
                if fired:
                    log.info("schedules fired %d job(s)", len(fired))
            except redis.RedisError as e:
                log.warning("ticker: redis unavailable (%s); retrying", type(e).__name__)
            except Exception:  # never let the thread die silently: the next pass tries again
                log.exception("ticker pass failed")
            self._stop_event.wait(self.interval)

    def request_stop(self) -> None:
        """Ask the loop to end after the current pass (safe from a signal handler)."""
        self._stop_event.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end and wait for it."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


def main() -> None:
    """``python -m jobs_core.ticker``: a standalone ticker (settings from the environment) until SIGTERM."""
    import signal

    from jobs_core.config import Settings
    from jobs_core.logs import setup_logging

    settings = Settings.from_env()
    setup_logging(settings.log_level)
    ticker = Ticker(JobStore.from_settings(settings), settings.schedule_tick_seconds, settings.schedule_grace_seconds)
    signal.signal(signal.SIGTERM, lambda *_: ticker.request_stop())
    ticker.start()
    while ticker.is_alive():
        ticker.join(0.5)


if __name__ == "__main__":
    main()
