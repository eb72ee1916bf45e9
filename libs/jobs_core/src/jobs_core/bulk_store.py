"""Console bulk actions (retry / cancel many jobs) that survive the death of the API process running them.

A bulk action is planned first (the preview: exactly which job ids, at most ``JOBS_UI_BULK_MAX``, kept in
a list), then started. Its whole state lives in Redis (``Keys.bulk``): the plan, the cursor (position in
the plan), the counts, who asked and a lease (``Keys.bulk_running``). It runs in chunks, each one Lua
step (``lua/bulk_chunk.lua``) that changes the chunk's jobs *and* moves the cursor, counts and lease
together: a chunk is never applied twice nor skipped. Any API process runs a :class:`BulkRunner`, which
takes over an action whose lease expired (its process died) and finishes it from its cursor; the holder's
token fences a process that lost its lease (its next chunk is refused). The start and the end are
written to the audit log in the same steps as the state changes.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.commands.core import Script

from jobs_core import scripts
from jobs_core.browse import AUDIT_KEEP
from jobs_core.config import Settings
from jobs_core.keys import Keys
from jobs_core.loop import PassLoop
from jobs_core.serialization import dumps

log = logging.getLogger("jobs_core.bulk")

#: How long a bulk action's plan and progress are kept.
BULK_TTL_SECONDS = 24 * 3600
#: A running action's lease; every chunk renews it, so only a dead (or stalled) holder lets it expire.
BULK_LEASE_MS = 10_000
#: Jobs one chunk (one Lua step) changes at most.
BULK_CHUNK = 100
#: Takeovers after which an action is given up (state ``failed``): something fails it every time.
BULK_MAX_CLAIMS = 20


@dataclass(frozen=True, slots=True)
class BulkStep:
    """What one chunk did: ``more`` (not finished), ``done`` (finished now), ``lost`` (another process
    holds the action, or it ended), ``stopped`` (:meth:`BulkStore.run_bulk` was asked to stop); and the
    action's counts after it."""

    outcome: str
    done: int = 0
    changed: int = 0
    skipped: int = 0


def holder_token() -> str:
    """A new lease token naming this process (host and pid, for the logs) and this run."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class BulkStore:
    """Bulk action state; mixed into :class:`jobs_core.store.JobStore`, which sets these up."""

    redis: redis.Redis
    settings: Settings
    keys: Keys

    def _bulk_scripts(self) -> None:
        self._bulk_start: Script = self.redis.register_script(scripts.BULK_START)
        self._bulk_claim: Script = self.redis.register_script(scripts.BULK_CLAIM)
        self._bulk_chunk: Script = self.redis.register_script(scripts.BULK_CHUNK)
        self._bulk_release: Script = self.redis.register_script(scripts.BULK_RELEASE)

    def create_bulk(self, action: str, who: str, flt: Mapping[str, str], ids: Sequence[str], complete: bool,
                    *, owner: str | None = None, tenant: str | None = None) -> str:
        """Record a bulk action's plan (exactly these ids, changed only if they belong to ``owner``, when
        given) and return its id; nothing is changed yet."""
        op_id = secrets.token_hex(8)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.bulk(op_id), mapping={
            "id": op_id, "action": action, "who": who, "filter": dumps(dict(flt)), "planned": len(ids),
            "complete": "1" if complete else "0", "state": "planned", "done": 0, "changed": 0, "skipped": 0,
            "created_ms": int(time.time() * 1000), "owner": owner or "",
            "audit": dumps({"who": who, "tenant": tenant, "action": action, "bulk": op_id, "planned": len(ids)}),
        })
        if ids:
            pipe.rpush(self.keys.bulk_ids(op_id), *ids)
        pipe.expire(self.keys.bulk(op_id), BULK_TTL_SECONDS)
        pipe.expire(self.keys.bulk_ids(op_id), BULK_TTL_SECONDS)
        pipe.execute()
        return op_id

    def bulk(self, op_id: str) -> dict[str, str] | None:
        """A bulk action's record (all values as text), or None when unknown or expired."""
        if not (len(op_id) == 16 and all(c in "0123456789abcdef" for c in op_id)):
            return None
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.bulk(op_id)))
        return {_text(k): _text(v) for k, v in raw.items()} or None

    def bulk_ids(self, op_id: str) -> list[str]:
        """The job ids a bulk action's plan selected."""
        return [_text(x) for x in cast(list[bytes], self.redis.lrange(self.keys.bulk_ids(op_id), 0, -1))]

    def start_bulk(self, op_id: str, holder: str, started: Mapping[str, Any]) -> bool:
        """Mark a planned action running, held by ``holder``, and append ``started`` to the audit log, in one
        step; False when it was already started (a double submit) or is unknown."""
        entry = dumps({**started, "at_ms": int(time.time() * 1000)})
        reply = self._bulk_start(keys=[self.keys.bulk(op_id), self.keys.bulk_running, self.keys.audit],
                                 args=[op_id, holder, BULK_LEASE_MS, entry, AUDIT_KEEP])
        return _text(reply[0]) == "ok"

    def claim_bulk(self, holder: str) -> str | None:
        """Take over one running action whose lease expired; its id, or None."""
        reply = self._bulk_claim(keys=[self.keys.bulk_running, self.keys.audit],
                                 args=[self.keys.bulk_prefix, holder, BULK_LEASE_MS, BULK_MAX_CLAIMS, AUDIT_KEEP])
        return _text(reply) if reply else None

    def release_bulk(self, op_id: str, holder: str) -> bool:
        """Hand an action ``holder`` holds back (its lease expires now: any runner takes it over at its next
        pass); False when ``holder`` no longer holds it."""
        return bool(self._bulk_release(keys=[self.keys.bulk(op_id), self.keys.bulk_running], args=[op_id, holder]))

    def bulk_chunk(self, op_id: str, holder: str, size: int = BULK_CHUNK) -> BulkStep:
        """Apply the next chunk of an action ``holder`` holds and checkpoint it (one Lua step)."""
        k = self.keys
        for _ in range(3):  # 'queues': a job's queue was not passed (read again; it never changes twice)
            cursor = cast(bytes | None, self.redis.hget(k.bulk(op_id), "cursor"))
            if cursor is None:
                return BulkStep("lost")
            ids = self.redis.lrange(k.bulk_ids(op_id), int(cursor), int(cursor) + size - 1)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in cast(list[bytes], ids):
                pipe.hget(k.job(_text(job_id)), "queue")
            names = sorted({_text(q) if q else self.settings.queue for q in pipe.execute()} or {self.settings.queue})
            blocks = [k.for_queue(name) for name in names]
            reply = self._bulk_chunk(
                keys=[k.bulk(op_id), k.bulk_ids(op_id), k.bulk_running, k.audit, k.pending, k.failed,
                      *[key for b in blocks for key in b.block]],
                args=[op_id, holder, _text(cursor), size, k.job_prefix, k.events_prefix,
                      self.settings.record_ttl_seconds, BULK_LEASE_MS, AUDIT_KEEP, self.settings.queue, len(blocks),
                      *[arg for b in blocks for arg in b.block_args]],
            )
            outcome = _text(reply[0])
            if outcome != "queues":
                counts = [int(x) for x in reply[1:4]] if outcome in ("more", "done") else [0, 0, 0]
                return BulkStep(outcome, *counts)
        return BulkStep("lost")

    def run_bulk(self, op_id: str, holder: str, rate: float, stop: threading.Event | None = None) -> BulkStep:
        """Run an action ``holder`` holds to its end, at most ``rate`` jobs a second, chunk by chunk; returns
        the last step: ``done``, ``lost`` (another process took it over) or ``stopped`` (``stop`` was set:
        the caller hands it back with :meth:`release_bulk`)."""
        size = max(1, min(BULK_CHUNK, int(rate)))
        stop = stop or threading.Event()
        while True:
            began = time.monotonic()
            step = self.bulk_chunk(op_id, holder, size)
            if step.outcome != "more":
                return step
            # pace: the jobs a bulk retry queues reach the workers at most `rate` a second
            if stop.wait(max(0.0, began + size / rate - time.monotonic())):
                return BulkStep("stopped", step.done, step.changed, step.skipped)


class BulkRunner(PassLoop):
    """A daemon thread in every API process: every ``interval`` seconds it takes over a bulk action whose
    holder's lease expired and runs it (in its own thread) to the end. :meth:`run_now` runs an action this
    process has just started. Once ``shutdown`` is set (the process received a stop signal), the actions it
    runs stop after their current chunk and are handed back, so another process resumes them at once."""

    def __init__(self, store: BulkStore, rate: float, interval: float = 2.0,
                 shutdown: threading.Event | None = None) -> None:
        super().__init__("jobs-bulk", "bulk runner", log, interval=interval, stop_event=shutdown)
        self.store = store
        self.rate = rate
        self._active: dict[str, threading.Thread] = {}

    def run_now(self, op_id: str, holder: str) -> threading.Thread:
        """Run ``op_id`` (held by ``holder``) in a new daemon thread; returns it."""
        thread = threading.Thread(target=self._run, args=(op_id, holder), name=f"bulk-{op_id}", daemon=True)
        self._active[op_id] = thread
        thread.start()
        return thread

    def _run(self, op_id: str, holder: str) -> None:
        try:
            step = self.store.run_bulk(op_id, holder, self.rate, self._stop_event)
            if step.outcome == "stopped":
                self.store.release_bulk(op_id, holder)
            log.info("bulk action %s: %s (%d done, %d changed, %d skipped)", op_id, step.outcome, step.done,
                     step.changed, step.skipped)
        except Exception:  # Redis gone, or a bug: the lease expires and a runner takes the action over
            log.exception("bulk action %s stopped; another runner resumes it when its lease expires", op_id)
        finally:
            self._active.pop(op_id, None)

    def step(self) -> None:
        """One takeover pass: an orphaned action (its holder's lease expired), if any, runs here from now on.
        Redis errors and failures are logged by the loop, and the next pass tries again."""
        holder = holder_token()
        op_id = self.store.claim_bulk(holder)
        if op_id is not None:
            log.warning("bulk action %s: its process stopped; resuming it here", op_id)
            self.run_now(op_id, holder)

    def hand_back(self, timeout: float = 2.0) -> None:
        """Stop: the actions this process runs end after their current chunk and are handed back; waits up to
        ``timeout`` s for that (called as the process exits: its daemon threads would die mid-way)."""
        self._stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in list(self._active.values()):
            thread.join(max(0.0, deadline - time.monotonic()))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
