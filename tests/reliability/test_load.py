"""Scenario 7, load: a steady 300 submissions/s plus status polling against gunicorn on this machine.

0 errors; reports p50/p99 of submit and status (from the scheduled send time) and the jobs/s completed.
"""

from __future__ import annotations

from pathlib import Path

from reliability import invariants, loadgen, report
from reliability.ledger import Ledger
from reliability.stack import Stack

RATE = 300.0
SECONDS = 60.0 if report.FULL else 5.0


def test_load(workdir: Path) -> None:
    stack = Stack(workdir, workers=2, concurrency=2, web_concurrency=2,
                  extra_env={"JOBS_LOG_LEVEL": "WARNING"}).start()
    try:
        result = loadgen.run(stack.base_url, stack.keys["alpha"], rate=RATE, seconds=SECONDS,
                             body={"task": "echo", "params": {"n": 1}}, poll_interval=0.5)
        ledger = Ledger()
        for job_id in result.accepted:
            ledger.add(job_id)
        client = stack.client()
        settle = ledger.wait_terminal(client, stack.namespace, 120)
        verdict = ledger.verify(client, stack.namespace)
        problems = invariants.settle(client, stack.namespace, stack.namespace)
        # completion rate from the records' own clock: first created to last finished
        pipe = client.pipeline(transaction=False)
        for job_id in result.accepted:
            pipe.hmget(f"{stack.namespace}:job:{job_id}", "created_at", "finished_at")
        stamps = [(int(c), int(f)) for c, f in pipe.execute() if c and f]
        span = (max(f for _, f in stamps) - min(c for c, _ in stamps)) / 1000 if stamps else 0.0
        row = report.Row(
            f"load {RATE:.0f}/s x {SECONDS:.0f}s", verdict.accepted, verdict.succeeded, len(verdict.lost),
            len(verdict.stuck), None, None, ", ".join(f"{k}x{v}" for k, v in result.errors.items()) or "none",
            figures={
                "offered/s": result.submitted / result.duration,
                "submit p50 ms": 1000 * loadgen.percentile(result.submit_latency, 0.5),
                "submit p99 ms": 1000 * loadgen.percentile(result.submit_latency, 0.99),
                "status p50 ms": 1000 * loadgen.percentile(result.status_latency, 0.5),
                "status p99 ms": 1000 * loadgen.percentile(result.status_latency, 0.99),
                "status polls": len(result.status_latency),
                "jobs/s completed": len(stamps) / span if span else 0.0,
                "max scheduling lag ms": 1000 * result.max_lag, "settle s": settle,
            },
        )
        report.record(row)
        assert not result.errors, result.errors
        assert result.submitted == len(result.accepted)
        assert not verdict.lost and not verdict.stuck
        assert verdict.succeeded == result.submitted
        assert not problems, problems
        assert not stack.server_errors_in_logs()
    finally:
        stack.stop()
