"""Whole-store consistency, checked once the stack is quiet (every job terminal, nothing running).

Beyond the ledger (the jobs clients know about), this looks at everything in the namespace: a job
created by a request whose answer never arrived must also have run; no record without a queue entry
(a non-terminal record with nothing to run it), no queue entry without a record, no leftover in-flight
entry or lease, and the per-tenant pending counters back at zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis
from jobs_core.keys import Keys

from reliability.http import TERMINAL


def violations(client: redis.Redis, prefix: str, queue: str, more: Sequence[str] = ()) -> list[str]:
    """Human-readable problems; empty when the store is consistent and quiet (``more``: other queues)."""
    found: list[str] = []
    job_keys = list(client.scan_iter(f"{prefix}:job:*", count=1000))
    ids = {k.decode().rsplit(":", 1)[1] for k in job_keys}
    pipe = client.pipeline(transaction=False)
    for key in job_keys:
        pipe.hget(key, "status")
    not_terminal = [k for k, st in zip(job_keys, pipe.execute(), strict=True) if (st or b"").decode() not in TERMINAL]
    if not_terminal:
        found.append(f"{len(not_terminal)} records not terminal at quiescence, e.g. {not_terminal[0]!r}")
    index = {m.decode() for m in client.zrange(f"{prefix}:index", 0, -1)}
    if index != ids:
        found.append(f"index and records differ: {len(index - ids)} index-only, {len(ids - index)} record-only")
    for q in (queue, *more):
        k = Keys(prefix, q)
        lists = [*k.waiting_lists, *k.paused_lists, k.inflight, k.dead_letter]
        lists += [k.parked_list(t.decode()) for t in client.smembers(k.parked)]
        for key in lists:
            n = client.llen(key)
            if n:
                found.append(f"{key} holds {n} entries: {client.lrange(key, 0, 2)!r}")
        for key in (k.leases, k.delayed):
            n = client.zcard(key)
            if n:
                found.append(f"{key} holds {n} entries")
    pending = {t.decode(): int(v) for t, v in client.hgetall(f"{prefix}:pending").items() if int(v) != 0}
    if pending:
        found.append(f"pending counters not zero: {pending}")
    return found


def settle(client: redis.Redis, prefix: str, queue: str, timeout: float = 30.0, more: Sequence[str] = ()) -> list[str]:
    """:func:`violations`, retried until it is empty or ``timeout`` passes (the last in-flight work ends)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        found = violations(client, prefix, queue, more)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)
