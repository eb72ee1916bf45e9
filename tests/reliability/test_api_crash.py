"""Scenario 4, API crash: SIGKILL gunicorn worker processes during a submission burst.

Clients see dropped connections (and retry); every 202'd job exists and completes, and so does any job
whose 202 was lost with the process; no record without a queue entry, no queue entry without a record.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from reliability import invariants, report
from reliability.ledger import EventLog, Ledger, Submitter
from reliability.stack import Stack

JOBS = 4000 if report.FULL else 1200
RATE = 150.0 if report.FULL else 120.0  # paced, so the burst outlasts several kill/replace cycles
KILLS = 10 if report.FULL else 3
EVERY = 0.5  # seconds between a replacement serving and the next kill


def _job(n: int) -> dict[str, object]:
    return {"task": "sleep", "params": {"seconds": 0.005}, "max_attempts": 25}


def test_api_crash(workdir: Path) -> None:
    stack = Stack(workdir, workers=2, concurrency=2, web_concurrency=2).start()
    try:
        ledger = Ledger()
        events = EventLog(stack.client, stack.namespace).start()
        submitter = Submitter(lambda: stack.http("alpha", timeout=10), ledger, _job, threads=8, rate=RATE).start(JOBS)
        kills = 0
        respawn: list[float] = []
        while not submitter.done and kills < KILLS:
            time.sleep(EVERY)
            before = set(stack.api_worker_pids())
            if len(before) < 2 or submitter.done:
                continue
            os.kill(random.choice(sorted(before)), signal.SIGKILL)
            killed = time.monotonic()
            kills += 1
            served = _wait_new_worker_serving(stack, before, killed)
            if served is not None:
                respawn.append(served)
        submitter.join(60)
        client = stack.client()
        ledger.wait_terminal(client, stack.namespace, 120)
        problems = invariants.settle(client, stack.namespace, stack.namespace)
        events.stop()
        verdict = ledger.verify(client, stack.namespace)
        records = sum(1 for _ in client.scan_iter(f"{stack.namespace}:job:*", count=1000))
        report.record(report.Row(
            "API crash (SIGKILL gunicorn workers)", verdict.accepted, verdict.succeeded, len(verdict.lost),
            len(verdict.stuck), events.duplicates(ledger.ids()), max(respawn, default=0.0), submitter.stats.describe(),
            figures={"gunicorn worker kills": kills,
                     "max s until a replacement served": max(respawn, default=0.0),
                     "records (incl. answers lost in a kill)": records,
                     "store invariant violations": len(problems)},
        ))
        assert kills >= 2
        assert len(respawn) == kills, "gunicorn did not replace a killed worker"
        assert verdict.accepted == JOBS, submitter.stats.describe()
        assert not verdict.lost and not verdict.stuck, (verdict.lost[:5], verdict.stuck[:5])
        assert verdict.succeeded == JOBS
        assert not problems, problems
        stack.assert_clean(submitter.stats.server_errors)
        # the master forks replacements with no control-socket thread running in it (see gunicorn_conf)
        assert "Control socket listening" not in stack.logs()["api.log"]
    finally:
        stack.stop()


def _wait_new_worker_serving(stack: Stack, before: set[int], since: float, timeout: float = 30.0) -> float | None:
    """Seconds from the kill until a gunicorn worker that did not exist before it logged a request."""
    while time.monotonic() - since < timeout:
        try:  # a fresh connection each time: the burst's keep-alive connections stay on the surviving worker
            stack.http(None, timeout=5).request("GET", "/healthz")
        except OSError:
            pass
        for pid in set(stack.api_worker_pids()) - before:
            log = (stack.workdir / "api.log").read_text(errors="replace")
            if f'"gunicorn.access","msg":"request","pid":{pid},' in log:
                return time.monotonic() - since
        time.sleep(0.02)
    return None
