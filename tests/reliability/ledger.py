"""The independent ledger of every job the API accepted, the execution log, and the final check.

The ledger is the client's view: a job is in it only once the API answered ``202`` with its id. At the
end every entry is looked up in Redis directly (not through the API): it must exist, be terminal, and
have the expected outcome. Executions are counted from the job event stream (each claim adds a
``running`` event), so duplicate runs are seen without trusting the job's own ``attempts`` counter.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.client import HTTPException
from typing import Any

import redis
from jobs_core import event_stream
from support.http_response import server_errors

from reliability.http import TERMINAL, Http


@dataclass
class Verdict:
    """What the final check found."""

    accepted: int
    succeeded: int
    lost: list[str]  # no record in Redis, or an outcome other than the expected one
    stuck: list[str]  # record exists but never became terminal
    outcomes: Counter[str]
    attempts: dict[str, int]


class Ledger:
    """Thread-safe record of accepted job ids (with the monotonic time of the 202)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted: dict[str, float] = {}
        self.expect: dict[str, str] = {}

    def add(self, job_id: str, expect: str = "succeeded") -> None:
        with self._lock:
            self.accepted[job_id] = time.monotonic()
            self.expect[job_id] = expect

    def __len__(self) -> int:
        return len(self.accepted)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self.accepted)

    def statuses(self, client: redis.Redis, prefix: str, ids: Iterable[str]) -> dict[str, tuple[str | None, int]]:
        """id -> (status or None when there is no record, attempts), read straight from Redis."""
        ids = list(ids)
        out: dict[str, tuple[str | None, int]] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            pipe = client.pipeline(transaction=False)
            for job_id in chunk:
                pipe.hmget(f"{prefix}:job:{job_id}", "status", "attempts")
            for job_id, (status, attempts) in zip(chunk, pipe.execute(), strict=True):
                out[job_id] = (status.decode() if status else None, int(attempts or 0))
        return out

    def wait_terminal(self, client: redis.Redis, prefix: str, timeout: float) -> float:
        """Poll until every entry is terminal (or missing) or ``timeout`` passes; the time it took."""
        start = time.monotonic()
        pending = set(self.ids())
        while pending and time.monotonic() - start < timeout:
            try:
                now = self.statuses(client, prefix, pending)
            except redis.ConnectionError:
                time.sleep(0.2)
                continue
            pending = {i for i, (st, _) in now.items() if st is not None and st not in TERMINAL}
            if pending:
                time.sleep(0.2)
        return time.monotonic() - start

    def verify(self, client: redis.Redis, prefix: str) -> Verdict:
        final = self.statuses(client, prefix, self.ids())
        lost = [i for i, (st, _) in final.items() if st is None or (st in TERMINAL and st != self.expect[i])]
        stuck = [i for i, (st, _) in final.items() if st is not None and st not in TERMINAL]
        outcomes = Counter(st or "missing" for st, _ in final.values())
        succeeded = sum(1 for i, (st, _) in final.items() if st == "succeeded" and self.expect[i] == "succeeded")
        return Verdict(len(final), succeeded, lost, stuck, outcomes, {i: a for i, (_, a) in final.items()})


class EventLog:
    """Follows the namespace's job event stream (what ``GET /events`` serves): (time, job id, event) in
    arrival order, timed on arrival (the reader blocks on the stream, so that is when the event happened).

    The stream, not the per-job pub/sub channels: those carry only the end of a job since issue 16 (their
    one listener, the long-poll, needs no more). Reconnects by itself when Redis goes away and carries on
    after the last entry it read; a Redis that came back without the stream (a crash without persistence)
    is read again from its start (events written while it was down, or lost with it, are not seen, which is
    why the Redis crash scenario does not count duplicates from it).
    """

    def __init__(self, client_factory: Callable[[], redis.Redis], prefix: str) -> None:
        self._factory = client_factory
        self.stream = f"{prefix}:events:stream"  # jobs_core.keys.Keys.event_stream
        self.events: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)

    def start(self) -> EventLog:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError("event listener did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last: str | None = None
        while not self._stop.is_set():
            try:
                client = self._factory()
                newest = client.xrevrange(self.stream, count=1)
                newest_id = newest[0][0].decode() if newest else "0-0"
                if last is None:
                    last = newest_id  # events from now on
                elif _stream_id(newest_id) < _stream_id(last):
                    last = "0-0"  # the stream came back shorter (Redis lost it): read what there is
                self._ready.set()
                while not self._stop.is_set():
                    for _stream, entries in client.xread({self.stream: last}, count=1000, block=200) or []:
                        now = time.monotonic()
                        for eid, fields in entries:
                            last = eid.decode()
                            # job events only (queue changes share the stream), several per entry when one
                            # script call changed several jobs
                            self.events += [(now, e["job"], e["status"]) for e in event_stream.job_events(fields)]
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.1)

    def runs(self) -> dict[str, list[float]]:
        """job id -> times it was claimed (each claim starts one execution)."""
        out: dict[str, list[float]] = defaultdict(list)
        for t, job_id, event in list(self.events):
            if event == "running":
                out[job_id].append(t)
        return out

    def duplicates(self, ids: Iterable[str]) -> int:
        """Executions beyond the first, over ``ids``."""
        runs = self.runs()
        return sum(max(0, len(runs.get(i, [])) - 1) for i in ids)

    def handbacks(self) -> int:
        """``queued`` events that followed a ``running`` one (hand-backs, retries, reaped jobs)."""
        last: dict[str, str] = {}
        count = 0
        for _, job_id, event in list(self.events):
            if event == "queued" and last.get(job_id) == "running":
                count += 1
            last[job_id] = event
        return count


def _stream_id(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class SubmitStats:
    """What the submitting clients saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    answers: list[tuple[float, int]] = field(default_factory=list)  # (monotonic time, HTTP status)

    @property
    def server_errors(self) -> int:
        """5xx answers other than 503 (503 is the promised answer while Redis is down)."""
        return server_errors(self.statuses)

    def describe(self) -> str:
        parts = [f"{s}x{n}" for s, n in sorted(self.statuses.items()) if s != 202]
        if self.transport_errors:
            parts.append(f"conn-errors x{self.transport_errors}")
        return ", ".join(parts) or "none"


class Submitter:
    """Threads submitting jobs through the API; 202s go to the ledger, 429/503/transport errors retried."""

    def __init__(self, http_factory: Callable[[], Http], ledger: Ledger, body: Callable[[int], dict[str, Any]],
                 *, threads: int = 4, rate: float | None = None, idempotency_prefix: str | None = None) -> None:
        self.http_factory = http_factory
        # with a prefix, submission n carries Idempotency-Key <prefix>-<n> (its retries too), as the CLI does
        self.idempotency_prefix = idempotency_prefix
        self.ledger = ledger
        self.body = body
        self.threads = threads
        self.rate = rate  # total submissions per second (None: as fast as the API answers)
        self.stats = SubmitStats()
        self._lock = threading.Lock()
        self._next = 0
        self._limit = 0
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self._t0 = 0.0

    def start(self, count: int) -> Submitter:
        self._limit = count
        self._t0 = time.monotonic()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def drain(self) -> None:
        """Start no new submission; those under way go on until answered 202 (or a non-retried status)."""
        with self._lock:
            self._limit = self._next

    def join(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        for t in self._workers:
            t.join(max(0.1, deadline - time.monotonic()))

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self._workers)

    def _take(self) -> int | None:
        with self._lock:
            if self._next >= self._limit or self._stop.is_set():
                return None
            n = self._next
            self._next += 1
            return n

    def _run(self) -> None:
        http = self.http_factory()
        try:
            while (n := self._take()) is not None:
                if self.rate:
                    delay = self._t0 + n / self.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                key = {"Idempotency-Key": f"{self.idempotency_prefix}-{n}"} if self.idempotency_prefix else None
                self._submit_one(http, self.body(n), key)
        finally:
            http.close()

    def _submit_one(self, http: Http, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                resp = http.request("POST", "/jobs", body, headers=headers)
            except (OSError, HTTPException):
                with self._lock:
                    self.stats.transport_errors += 1
                time.sleep(0.05)
                continue
            with self._lock:
                self.stats.statuses[resp.status] += 1
                self.stats.latencies.append(time.monotonic() - t)
                self.stats.answers.append((time.monotonic(), resp.status))
            if resp.status == 202:
                self.ledger.add(resp.json()["id"])
                return
            if resp.status in (429, 503):
                time.sleep(0.1)
                continue
            return  # anything else is counted and not retried
