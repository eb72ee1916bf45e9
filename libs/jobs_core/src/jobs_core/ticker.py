"""The schedule ticker: a loop that fires due schedule ticks, safe to run in any number of processes.

Every API process runs one (a daemon thread started by gunicorn's ``post_worker_init``), because the API
is the part of a deployment that is always up: worker pools may be scaled to zero by KEDA, and a
schedule must fire precisely when no worker runs (its job is what scales them up again). No leader is
elected: each tick is enqueued exactly once by the ``fire_schedule`` script whichever ticker gets there
first; the others find the tick accounted for and change nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from jobs_core.loop import PassLoop, run_until_signalled
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


class Ticker(PassLoop):
    """A daemon thread calling :func:`tick_once` every ``interval`` seconds until :meth:`stop`."""

    def __init__(
        self,
        store: JobStore,
        interval: float = 1.0,
        grace_seconds: float = 30.0,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        super().__init__("jobs-ticker", "ticker", log, interval=interval)
        self.store = store
        self._prepare = prepare
        self.grace_ms = int(grace_seconds * 1000)

    def step(self) -> None:
        """Run ``prepare`` once (retried each pass until it succeeds), then fire what is due."""
        if self._prepare is not None:  # e.g. apply declared schedules; retried until it succeeds
            self._prepare()
            self._prepare = None
        fired = tick_once(self.store, self.grace_ms)
        if fired:
            log.info("schedules fired %d job(s)", len(fired))


def main() -> None:
    """``python -m jobs_core.ticker``: a standalone ticker (settings from the environment) until SIGTERM."""
    from jobs_core.config import Settings
    from jobs_core.logs import setup_logging

    settings = Settings.from_env()
    setup_logging(settings.log_level)
    ticker = Ticker(JobStore.from_settings(settings), settings.schedule_tick_seconds, settings.schedule_grace_seconds)
    run_until_signalled(ticker)


if __name__ == "__main__":
    main()
