"""Scenario 9, webhooks through crashes: a ledger of every terminal transition and its webhook event.

Jobs with a ``callback_url`` to a real loopback receiver (it records every request; every signature is
verified with ``standardwebhooks`` against the tenant's secret) are submitted through the API while
jobs-workers are SIGKILLed, gunicorn workers (whose dispatcher threads deliver the events) are SIGKILLed,
the receiver answers 500 for a while and is then down (port closed), and redis-server is SIGKILLed and
restarted on its AOF (``appendfsync always``). The mix: jobs that succeed, fail, are cancelled, fail and
are retried by the client (two terminal transitions, two events), and jobs without a callback. The
tenant has a webhook subscription taking failures and cancellations, set before the first submission.

The ledger, built from what the client did (not from the outbox): each terminal transition is one event
id ``<job>:<n>`` (and one more, ``<job>:<n>:subscription``, when the subscription takes its status),
delivered with a 2xx at least once, signed, with the status of that transition; the job's
``terminal_seq`` equals the transitions (exactly one number each); no request for an event that is not
in the ledger (a job without a callback and a status the subscription does not take, a transition that
did not happen); duplicate deliveries
are counted and reported (at-least-once allows them); the outbox is empty at the end.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from support.webhook_receiver import Receiver

from reliability import invariants, report
from reliability.http import TERMINAL
from reliability.stack import Stack

JOBS = 600 if report.FULL else 60
RATE = 15.0 if report.FULL else 8.0  # submissions/s: the chaos below happens while they stream in
PHASE = 3.0 if report.FULL else 0.7  # seconds between chaos steps
DOWNTIME = 5.0 if report.FULL else 1.5  # Redis down, receiver down, receiver answering 500: each this long
WORKER_KILLS = 4 if report.FULL else 1
API_KILLS = 2 if report.FULL else 1
HOOK_ENV = {"JOBS_WEBHOOK_ALLOW_HTTP": "1", "JOBS_WEBHOOK_ALLOW_PRIVATE": "1", "JOBS_WEBHOOK_RETRY_SECONDS": "0.2",
            "JOBS_WEBHOOK_TIMEOUT_SECONDS": "1"}
#: kind -> the statuses of its terminal transitions, in order (one webhook event each)
EXPECT = {"ok": ["succeeded"], "fail": ["failed"], "retried": ["failed", "failed"], "cancel": ["cancelled"],
          "plain": []}
#: The tenant's subscription (set before the first submission) takes these: each such transition is one
#: more event, ``<job>:<n>:subscription``, besides the callback's ``<job>:<n>``.
SUBSCRIBED = ("failed", "cancelled")


def _kind(n: int) -> str:
    return ("ok", "ok", "ok", "ok", "ok", "fail", "retried", "cancel", "plain", "ok")[n % 10]


def _body(n: int, url: str) -> dict[str, Any]:
    kind = _kind(n)
    body: dict[str, Any] = {"task": "sleep", "params": {"seconds": 0.05 + (n % 4) * 0.05}, "max_attempts": 25}
    if kind in ("fail", "retried"):
        body = {"task": "fail", "params": {"message": f"job {n}"}, "max_attempts": 1}
    elif kind == "cancel":
        body = {"task": "echo", "params": {"n": n}, "delay": 3600}
    if kind != "plain":
        body["callback_url"] = url
    return body


class _Client:
    """One client thread: submits JOBS jobs at RATE (Idempotency-Key per job, so a retry after a lost
    reply returns the same job), cancels the delayed ones, and retries (POST /jobs/<id>/retry) each
    ``retried`` job once it failed; requests are repeated on 429/503 and dropped connections."""

    def __init__(self, stack: Stack, url: str) -> None:
        self.stack, self.url = stack, url
        self.jobs: dict[str, str] = {}  # id -> kind
        self.to_retry: list[str] = []
        self.answers: Counter[str] = Counter()
        self.thread = threading.Thread(target=self._guarded, daemon=True)
        self.error: BaseException | None = None

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200, 202)) -> Any:
        http = self.stack.http("alpha", timeout=15)
        while True:
            try:
                resp = http.request(method, path, body, headers=headers)
            except (OSError, HTTPException):
                self.answers["conn-errors"] += 1
                time.sleep(0.1)
                continue
            if resp.status in ok:
                return resp.json()
            self.answers[str(resp.status)] += 1
            assert resp.status in (429, 503), (method, path, resp)
            time.sleep(0.1)

    def change(self, method: str, job_id: str, path: str, done: Callable[[dict[str, Any]], bool]) -> None:
        """Send a state change until the job shows it. A request whose answer was lost (dropped connection,
        503 while Redis went away) may have been applied: the job is read before every (re)send, so the
        change is made once, as a careful client does (a retry sent twice could run the job twice)."""
        http = self.stack.http("alpha", timeout=15)
        while not done(self.call("GET", f"/jobs/{job_id}")):
            try:
                resp = http.request(method, path)
            except (OSError, HTTPException):
                self.answers["conn-errors"] += 1
            else:
                if not 200 <= resp.status < 300:
                    self.answers[str(resp.status)] += 1
                    assert resp.status in (409, 429, 503), (method, path, resp)
            time.sleep(0.05)

    def _guarded(self) -> None:
        try:
            self._run()
        except BaseException as e:  # seen by the test, not only as a thread warning
            self.error = e
            raise

    def _run(self) -> None:
        t0 = time.monotonic()
        for n in range(JOBS):
            time.sleep(max(0.0, t0 + n / RATE - time.monotonic()))
            job = self.call("POST", "/jobs", _body(n, self.url), {"Idempotency-Key": f"hook-{n}"})
            self.jobs[job["id"]] = _kind(n)
            if _kind(n) == "cancel":
                self.change("DELETE", job["id"], f"/jobs/{job['id']}", lambda j: j["status"] == "cancelled")
            if _kind(n) == "retried":
                self.to_retry.append(job["id"])
            self._retry_failed()
        while self.to_retry:
            time.sleep(0.2)
            self._retry_failed()

    def _retry_failed(self) -> None:
        for job_id in list(self.to_retry):
            first = self.call("GET", f"/jobs/{job_id}")
            if first["status"] == "failed":
                self.change("POST", job_id, f"/jobs/{job_id}/retry",
                            lambda j, ended=first["finished_at"]: j["status"] != "failed" or j["finished_at"] != ended)
                self.to_retry.remove(job_id)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # Redis restarting: ask again
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _statuses(stack: Stack, ids: list[str]) -> dict[str, tuple[str, int]]:
    client = stack.client()
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hmget(f"{stack.namespace}:job:{job_id}", "status", "terminal_seq")
    return {j: ((st or b"missing").decode(), int(seq or 0)) for j, (st, seq) in zip(ids, pipe.execute(), strict=True)}


def test_webhook_events_delivered_at_least_once_through_crashes(workdir: Path) -> None:
    receiver = Receiver().start()
    stack = Stack(workdir, workers=2, concurrency=2, appendfsync="always", web_concurrency=2,
                  extra_env=HOOK_ENV).start()
    try:
        admin = stack.http("alpha-admin")
        secret = admin.request("POST", "/webhooks/secret/rotate").json()["secret"]
        client = _Client(stack, receiver.url)
        client.call("PUT", "/webhooks/subscription", {"url": receiver.url.replace("/hook", "/tenant"),
                                                      "statuses": list(SUBSCRIBED)}, ok=(201,))
        client.thread.start()
        chaos: Counter[str] = Counter()

        def step() -> None:
            time.sleep(PHASE)

        for _ in range(WORKER_KILLS):  # jobs-workers SIGKILLed mid-job: their jobs re-run, end once
            step()
            victim = _wait(stack.random_worker, 60, "a ready jobs-worker")  # the last one replaced is up
            stack.kill_worker(victim)
            stack.start_worker(like=victim)
            chaos["jobs-workers SIGKILLed"] += 1
        receiver.answer = 500  # receiver failing: every attempt meanwhile is retried later
        step()
        for _ in range(API_KILLS):  # a dispatcher dies with its gunicorn worker: its events claimed by another
            os.kill(stack.api_worker_pids()[0], signal.SIGKILL)
            chaos["gunicorn workers SIGKILLed"] += 1
            step()
        time.sleep(max(0.0, DOWNTIME - PHASE * API_KILLS))
        receiver.stop()  # receiver down: connection refused
        time.sleep(DOWNTIME)
        receiver.answer = 200
        receiver.start()
        step()
        stack.redis.kill()  # Redis crash: outbox, consumer group and records come back from the AOF
        time.sleep(DOWNTIME)
        stack.redis.restart()
        back = time.monotonic()
        chaos["redis crashes"] += 1
        client.thread.join(300)
        assert not client.thread.is_alive() and client.error is None, ("submissions did not finish", client.error)
        ids = list(client.jobs)
        _wait(lambda: all(st in TERMINAL for st, _ in _statuses(stack, ids).values()), 180, "every job terminal")
        _wait(lambda: all(_statuses(stack, [j])[j] == ("failed", 2) for j, k in client.jobs.items() if k == "retried"),
              180, "the retried jobs to fail again")
        expected: dict[str, str] = {}  # event id -> status of that transition
        for job_id, kind in client.jobs.items():
            for n, status in enumerate(EXPECT[kind], 1):
                expected[f"{job_id}:{n}"] = status
                if status in SUBSCRIBED:
                    expected[f"{job_id}:{n}:subscription"] = status
        outbox = f"{stack.namespace}:events:webhooks"

        def delivered() -> set[str]:
            return {h.get("webhook-id", "") for (h, _), (_, code) in zip(receiver.received, receiver.answers,
                                                                         strict=False) if 200 <= code < 300}

        _wait(lambda: set(expected) <= delivered() and stack.client().xlen(outbox) == 0, 240,
              "every event delivered and the outbox empty")
        time.sleep(1.0)  # a late duplicate (an attempt under way) still counts
        problems = invariants.settle(stack.client(), stack.namespace, stack.namespace)
        # the ledger
        bad_signatures = 0
        wrong_status: list[str] = []
        per_event: Counter[str] = Counter()
        ok_per_event: Counter[str] = Counter()
        for (headers, body), (_, code) in zip(list(receiver.received), list(receiver.answers), strict=False):
            try:
                event = Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                bad_signatures += 1
                continue
            eid = headers["webhook-id"]
            per_event[eid] += 1
            if 200 <= code < 300:
                ok_per_event[eid] += 1
            if eid in expected and event["data"]["status"] != expected[eid]:
                wrong_status.append(f"{eid}: {event['data']['status']} (expected {expected[eid]})")
        missing = sorted(set(expected) - set(ok_per_event))
        phantom = sorted(set(per_event) - set(expected))
        final = _statuses(stack, ids)
        seq_wrong = [j for j, (_, seq) in final.items() if seq != len(EXPECT[client.jobs[j]])]
        outcome_wrong = [j for j, (st, _) in final.items()
                         if EXPECT[client.jobs[j]] and st != EXPECT[client.jobs[j]][-1]]
        duplicates = sum(n - 1 for n in ok_per_event.values())
        after = [t for t, code in receiver.answers if t > back and 200 <= code < 300]
        recovery = min(after) - back if after else None
        got = len(set(expected) & set(ok_per_event))
        report.record(report.Row(
            "webhooks: delivery through crashes", len(expected), got,
            len(missing), len(phantom), duplicates, recovery,
            ", ".join(f"{k}x{v}" for k, v in sorted(client.answers.items())) or "none",
            figures={"jobs": len(ids), "with callback": sum(1 for k in client.jobs.values() if k != "plain"),
                     "events (transition x destination)": len(expected),
                     "to the subscription": sum(1 for e in expected if e.endswith(":subscription")),
                     "delivered": got,
                     "requests received": len(receiver.received),
                     "answered 500": sum(1 for _, c in receiver.answers if c == 500),
                     **dict(chaos), "receiver down s": DOWNTIME, "redis down s": DOWNTIME,
                     "events lost": len(missing), "events for no transition": len(phantom),
                     "duplicate deliveries (2xx beyond the first)": duplicates,
                     "bad signatures": bad_signatures, "first delivery after Redis back, s": recovery},
        ))
        assert len(ids) == JOBS
        assert not missing, missing[:5]
        assert not phantom, phantom[:5]
        assert bad_signatures == 0
        assert not wrong_status, wrong_status[:5]
        assert not seq_wrong, [(j, final[j], client.jobs[j]) for j in seq_wrong[:5]]
        assert not outcome_wrong, [(j, final[j], client.jobs[j]) for j in outcome_wrong[:5]]
        hooks = [orjson.loads(stack.client().hget(f"{stack.namespace}:job:{j}", "webhook") or b"{}")
                 for j, k in client.jobs.items() if k != "plain"]
        assert all(h.get("delivered") for h in hooks), "a job does not show its delivery"
        assert not problems, problems
        left = stack.client()  # nothing scheduled or counted for an event that is over
        assert left.zcard(f"{stack.namespace}:webhook_due") == 0
        assert left.hlen(f"{stack.namespace}:webhook_attempts") == 0
        assert chaos["redis crashes"] == 1 and chaos["gunicorn workers SIGKILLed"] == API_KILLS
        assert chaos["jobs-workers SIGKILLed"] == WORKER_KILLS
    finally:
        stack.stop()
        receiver.stop()
