"""Shared driver of the worker scenarios: a submission stream plus a chaos action every few seconds."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from reliability.http import TERMINAL
from reliability.ledger import EventLog, Ledger, Submitter
from reliability.stack import Stack


@dataclass
class Disruption:
    """One chaos action: when, which worker (pid), and the jobs it held at that moment."""

    at: float
    pid: int
    victims: list[str] = field(default_factory=list)


def sleep_job(n: int) -> dict[str, object]:
    """A ``sleep`` job of 20-200 ms (deterministic per n); attempts to spare so chaos alone cannot fail it."""
    rng = random.Random(n)
    return {"task": "sleep", "params": {"seconds": round(rng.uniform(0.02, 0.2), 3)}, "max_attempts": 25}


def two_queue_job(n: int) -> dict[str, object]:
    """Every other job is ``routed`` (the stack's second queue, its second worker group), the rest ``sleep``;
    priorities 0-9 in use."""
    job = {**sleep_job(n), "priority": n % 10}
    return {**job, "task": "routed"} if n % 2 else job


def jobs_held_by(stack: Stack, pid: int) -> list[str]:
    """Ids of jobs Redis says the worker with this pid is running (read right after it was stopped)."""
    client = stack.client()
    entries = [e for q in stack.queues for e in client.zrange(f"{stack.namespace}:{q}:leases", 0, -1)]
    held = []
    for raw in entries:
        job_id = raw.decode()
        status, worker = client.hmget(f"{stack.namespace}:job:{job_id}", "status", "worker")
        if status == b"running" and worker and worker.decode().split(":")[1] == str(pid):
            held.append(job_id)
    return held


def run_with_chaos(
    stack: Stack,
    jobs: int,
    every: float,
    act: Callable[[Stack, subprocess.Popen[bytes]], None],
    *,
    submit_threads: int = 4,
    settle_timeout: float = 120.0,
    job: Callable[[int], dict[str, object]] | None = None,
    spare: bool = False,
    max_disruptions: int | None = None,
) -> tuple[Ledger, EventLog, Submitter, list[Disruption], float]:
    """Submit ``jobs`` sleep jobs (or ``job(n)``) through the API while ``act`` hits a random worker every
    ``every`` s (with ``spare``, never the last ready worker of its group: see :meth:`Stack.random_worker`;
    a hit with no such worker is skipped).

    Chaos stops once every accepted job is terminal (and the submission is over), or after
    ``max_disruptions`` hits (the rest of the jobs then run on the workers as they are). Returns the ledger,
    the event log, the submitter (client-side stats), the disruptions and the wall time.
    """
    ledger = Ledger()
    events = EventLog(stack.client, stack.namespace).start()
    job = job or (two_queue_job if stack.second_queue else sleep_job)
    submitter = Submitter(lambda: stack.http("alpha"), ledger, job, threads=submit_threads).start(jobs)
    disruptions: list[Disruption] = []
    client = stack.client()
    t0 = time.monotonic()
    next_hit = t0 + every
    try:
        while True:
            if submitter.done and _all_terminal(ledger, client, stack.namespace):
                break
            if time.monotonic() - t0 > settle_timeout:
                break
            if time.monotonic() >= next_hit and (max_disruptions is None or len(disruptions) < max_disruptions):
                victim = stack.random_worker(spare=spare)
                if victim is None and spare:  # every group is down to one ready worker: try again shortly
                    time.sleep(0.2)
                    continue
                next_hit += every
                if victim is None:
                    continue
                at = time.monotonic()
                act(stack, victim)
                disruptions.append(Disruption(at, victim.pid, jobs_held_by(stack, victim.pid)))
                stack.start_worker(like=victim)
            time.sleep(0.2)
        submitter.join(30)
        ledger.wait_terminal(client, stack.namespace, 60)
        elapsed = time.monotonic() - t0
        time.sleep(0.3)  # let the last events arrive
    finally:
        submitter.stop()
        events.stop()
    return ledger, events, submitter, disruptions, elapsed


def _all_terminal(ledger: Ledger, client: redis.Redis, prefix: str) -> bool:
    return all(st in TERMINAL for st, _ in ledger.statuses(client, prefix, ledger.ids()).values())


def recovery_times(events: EventLog, disruptions: list[Disruption]) -> list[float]:
    """For each job held by a disrupted worker: seconds from the disruption to its next claim."""
    return [claim for _, claim in recovery_phases(events, disruptions)]


@dataclass(frozen=True)
class Recovery:
    """One job held by a disrupted worker that ran again: monotonic times of the disruption, of the job being
    queued again (by the reaper or a hand-back; None if only its claim was seen) and of its next claim."""

    at: float
    queued: float | None
    claimed: float


def recoveries(events: EventLog, disruptions: list[Disruption]) -> list[Recovery]:
    """For each job held by a disrupted worker that ran again: when it was queued again and claimed again."""
    by_job: dict[str, list[tuple[float, str]]] = {}
    for t, job_id, event in list(events.events):
        by_job.setdefault(job_id, []).append((t, event))
    out = []
    for d in disruptions:
        for job_id in d.victims:
            later = [(t, e) for t, e in by_job.get(job_id, []) if t > d.at]
            queued = next((t for t, e in later if e == "queued"), None)
            claimed = next((t for t, e in later if e == "running"), None)
            if claimed is not None:
                out.append(Recovery(d.at, queued, claimed))
    return out


def recovery_phases(events: EventLog, disruptions: list[Disruption]) -> list[tuple[float, float]]:
    """For each job held by a disrupted worker that ran again: (seconds until it was queued again, by the
    reaper or a hand-back; seconds until a worker claimed it again), both from the disruption."""
    return [((r.queued or r.claimed) - r.at, r.claimed - r.at) for r in recoveries(events, disruptions)]
