"""Scenario: a console bulk action outlives the API that runs it.

An operator cancels everything matching a filter (thousands of jobs) through the console of a real
gunicorn API; mid-way the whole API (master and workers, as a lost pod) is SIGKILLed, and a new API
process starts. Its bulk runner takes the action over when the lease runs out; later that API is stopped
politely (SIGTERM, a rollout: it hands the action back) and a third one finishes it. The action completes,
every planned job is cancelled exactly once (one ``cancelled`` event each), the counts are exact, the
progress page keeps answering across the takeover, and the audit log has one start and one end.
"""

from __future__ import annotations

import collections
import json
import re
import signal
import time
from pathlib import Path

import requests
from jobs_core import event_stream
from jobs_core.bulk_store import BULK_LEASE_MS
from jobs_core.model import JobStatus, Submission

from reliability import report
from reliability.stack import Stack, _kill_group

JOBS = 5000 if report.FULL else 3000
RATE = 500  # JOBS_UI_BULK_RATE: the action takes several seconds, so the kill lands mid-way


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def _login(base: str, key: str) -> tuple[requests.Session, str]:
    s = requests.Session()
    s.headers["Accept"] = "text/html"
    token = _csrf(s.get(f"{base}/ui/login", timeout=30).text)
    assert s.post(f"{base}/ui/login", data={"api_key": key, "csrf_token": token, "next": "/ui/jobs"},
                  allow_redirects=False, timeout=30).status_code == 303
    return s, _csrf(s.get(f"{base}/ui/jobs", timeout=30).text)


def test_bulk_action_survives_the_death_of_its_api(workdir: Path) -> None:
    stack = Stack(workdir, workers=0, web_concurrency=2, extra_env={"JOBS_UI_BULK_RATE": str(RATE)}).start()
    try:
        store = stack.store()
        for start in range(0, JOBS, 500):
            store.enqueue_many([Submission("sleep", {"seconds": 0, "i": i}) for i in range(start, start + 500)],
                               owner="alpha")
        other = store.enqueue("sleep", {}, owner="beta")[0].id  # another tenant's: never in alpha's plan
        base = stack.base_url
        session, token = _login(base, stack.keys["alpha"])
        preview = session.post(f"{base}/ui/bulk/preview?status=queued", data={"act": "cancel-filter",
                                                                              "csrf_token": token}, timeout=60)
        assert preview.status_code == 200 and f'id="bulk-count">{JOBS}<' in preview.text, preview.text[:2000]
        op_id = re.search(r"/ui/bulk/([0-9a-f]{16})/run", preview.text).group(1)  # type: ignore[union-attr]
        run = session.post(f"{base}/ui/bulk/{op_id}/run", data={"csrf_token": token}, allow_redirects=False,
                           timeout=30)
        assert run.status_code == 303

        def status() -> dict[str, object]:
            resp = session.get(f"{base}/ui/bulk/{op_id}/status", timeout=10)
            assert resp.status_code == 200, resp.text
            body: dict[str, object] = resp.json()
            return body

        deadline = time.monotonic() + 60
        while int(status()["done"]) < JOBS // 5:  # type: ignore[call-overload]
            assert time.monotonic() < deadline, status()
            time.sleep(0.05)
        holder = store.bulk(op_id)["holder"]  # type: ignore[index]
        assert stack.api is not None and int(holder.split(":")[1]) in stack.api_worker_pids()
        _kill_group(stack.api)  # master and workers at once, as a lost pod: nobody finishes the chunk loop
        killed_at = time.monotonic()
        at_kill = store.bulk(op_id)
        assert at_kill is not None and at_kill["state"] == "running" and int(at_kill["done"]) < JOBS, at_kill

        stack.start_api()
        stack.wait_ready()
        resumed_at = None
        deadline = time.monotonic() + BULK_LEASE_MS / 1000 + 90
        seen: list[int] = []
        handed_back = None
        while (body := status())["state"] != "done":  # the progress page answers on the new process
            seen.append(int(body["done"]))  # type: ignore[call-overload]
            if resumed_at is None and seen[-1] > int(at_kill["done"]):
                resumed_at = time.monotonic() - killed_at
            if handed_back is None and seen[-1] > JOBS * 3 // 5:
                # a rollout: SIGTERM the new API (it hands the action back after its chunk), start another
                stack.api.send_signal(signal.SIGTERM)
                assert stack.api.wait(30) == 0
                handed_back = "holder" not in (store.bulk(op_id) or {})
                stack.start_api()
                stack.wait_ready()
                continue
            assert body["state"] == "running" and time.monotonic() < deadline, body
            time.sleep(0.1)
        assert seen == sorted(seen), "progress went backwards"
        assert (body["planned"], body["done"], body["changed"], body["skipped"]) == (JOBS, JOBS, JOBS, 0), body
        assert handed_back, "the API stopped by SIGTERM did not hand the action back (gunicorn worker_exit)"
        assert int(body["resumed"]) >= 2  # type: ignore[call-overload]
        final = store.bulk(op_id)
        assert final is not None and final["cursor"] == str(JOBS) and "holder" not in final

        client = stack.client()
        ids = store.bulk_ids(op_id)
        assert len(ids) == len(set(ids)) == JOBS
        assert all(j.status is JobStatus.CANCELLED for j in store.get_many(ids))
        assert store.get(other).status is JobStatus.QUEUED
        cancelled = collections.Counter(
            e["job"] for _, fields in client.xrange(store.keys.event_stream)
            for e in event_stream.job_events(fields) if e["status"] == "cancelled")
        assert set(cancelled) == set(ids) and set(cancelled.values()) == {1}, "a job was cancelled twice"
        assert int(client.hget(store.keys.pending, "alpha") or 0) == 0
        assert client.llen(store.keys.queue) == 1 and client.zcard(store.keys.bulk_running) == 0
        audit = [e for e in store.audit_log() if e["target"] == f"bulk:{op_id}"]
        assert [e["outcome"] for e in audit] == ["ok", "started"]  # finished, started
        done = json.loads(audit[0]["detail"])
        assert (done["done"], done["changed"], done["skipped"]) == (JOBS, JOBS, 0)
        assert audit[1]["count"] == JOBS and (audit[1]["tenant"], audit[1]["role"]) == ("alpha", "operator")
        assert not stack.server_errors_in_logs(), stack.server_errors_in_logs()
        assert not stack.leaked_secrets()
        report.record(report.Row(
            "Console bulk action, its API SIGKILLed mid-way", JOBS, None, 0, 0,
            sum(cancelled.values()) - JOBS, resumed_at,
            figures={"jobs done when killed": int(at_kill["done"]), "takeovers": int(body["resumed"]),  # type: ignore[call-overload]
                     "lease s": BULK_LEASE_MS / 1000, "handed back on SIGTERM": handed_back},
        ))
    finally:
        stack.stop()
