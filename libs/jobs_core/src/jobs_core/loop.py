"""The background loop shared by the API process's Redis-backed daemons (the schedule ticker, the webhook
dispatcher, the console's bulk runner): a thread that runs one pass after another until asked to stop, and
survives Redis outages.

What each of them had spelled out on its own: a pass that meets a Redis error is logged as a warning and
retried after a pause (Redis restarting or failing over is routine: no traceback), any other error is
logged with its traceback and the loop carries on (a daemon thread that dies silently would stop firing
schedules or delivering webhooks with nothing in the logs), and a stop request — from another thread or a
signal handler — ends the loop after its current pass, also during the pause. The leases and schedules a
pass works with live in Redis and in the pass's scripts, not here: a stopped loop leaves nothing behind that
another process's pass would not take over.
"""

from __future__ import annotations

import logging
import signal
import threading

import redis


class PassLoop(threading.Thread):
    """A daemon thread calling ``step()`` until :meth:`stop`.

    ``step`` returns how long to wait before the next pass (0: at once; it may block on Redis itself).
    The first pass runs as soon as the thread starts.
    A pass that raised waits ``retry_seconds`` (``None``: the same as after a pass, ``interval``). Redis
    errors are logged as ``"<label>: redis unavailable (<error type>); retrying"``, others with their
    traceback as ``"<label> pass failed"``, on ``logger``.
    """

    def __init__(self, name: str, label: str, logger: logging.Logger, *, interval: float,
                 retry_seconds: float | None = None, stop_event: threading.Event | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.label = label
        self.interval = interval
        self.retry_seconds = retry_seconds
        self._log = logger
        # ``stop_event``: an event of the process's own (set when it is told to stop) also ends the loop
        self._stop_event = stop_event or threading.Event()
        #: completed passes and passes that raised (for tests and debugging; not thread-synchronised)
        self.passes = 0
        self.failures = 0

    def step(self) -> float | None:
        """One pass; returns the wait before the next (``None``: ``interval``). Subclasses implement it."""
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop_event.is_set()

    def run(self) -> None:
        """Pass after pass until stopped; errors are logged and the next pass tries again."""
        while not self._stop_event.is_set():
            try:
                wait = self.step()
                self.passes += 1
                delay = self.interval if wait is None else wait
            except redis.RedisError as e:
                self.failures += 1
                self._log.warning("%s: redis unavailable (%s); retrying", self.label, type(e).__name__)
                delay = self.interval if self.retry_seconds is None else self.retry_seconds
            except Exception:  # never let the thread die silently: the next pass tries again
                self.failures += 1
                self._log.exception("%s pass failed", self.label)
                delay = self.interval if self.retry_seconds is None else self.retry_seconds
            if delay > 0:
                self._stop_event.wait(delay)

    def request_stop(self) -> None:
        """Ask the loop to end after the current pass (safe from a signal handler)."""
        self._stop_event.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to end and wait up to ``timeout`` s for it."""
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)


def run_until_signalled(loop: PassLoop, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
    """Run ``loop`` as a standalone process's main work until one of ``signals`` arrives (then end its
    current pass and return). Call from the main thread (signal handlers are installed there)."""
    for sig in signals:
        signal.signal(sig, lambda *_: loop.request_stop())
    loop.start()
    while loop.is_alive():
        loop.join(0.5)
