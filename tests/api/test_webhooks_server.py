"""Webhooks under the real server: gunicorn API processes (their dispatcher threads) and worker processes,
a real loopback receiver. A ledger: every terminal event of a job with a callback is delivered at least
once with a valid signature — also for a job whose worker is SIGKILLed mid-run — and nothing is sent for
jobs without one. The README's webhook examples run as written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook
from support.procs import wait_for
from support.webhook_receiver import Receiver

from api.stack import ApiStack, http
from api.test_readme import README, _section
from api.test_readme_flows import run_blocks

HOOK_ENV = {"JOBS_WEBHOOK_ALLOW_HTTP": "1", "JOBS_WEBHOOK_ALLOW_PRIVATE": "1", "JOBS_WEBHOOK_RETRY_SECONDS": "0.2",
            "JOBS_WEBHOOK_TIMEOUT_SECONDS": "2"}
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _post(stack: ApiStack, body: dict[str, object]) -> dict[str, object]:
    status, _, raw = http("POST", stack.url + "/jobs", body)
    assert status == 202, raw
    out: dict[str, object] = json.loads(raw)
    return out


def test_every_terminal_event_is_delivered_through_a_worker_sigkill(redis_url: str, tmp_path: Path,
                                                                      receiver: Receiver) -> None:
    stack = ApiStack(tmp_path / "stack", redis_url, workers=2, extra_env=HOOK_ENV).start()
    try:
        status, _, raw = http("POST", stack.url + "/webhooks/secret/rotate")
        assert status == 200
        secret = json.loads(raw)["secret"]
        receiver.answer = 500  # the first attempts fail: retried
        hooked: list[str] = []
        for _ in range(6):
            hooked.append(str(_post(stack, {"task": "sleep", "params": {"seconds": 2},
                                            "callback_url": receiver.url})["id"]))
        for i in range(6):
            hooked.append(str(_post(stack, {"task": "echo", "params": {"i": i}, "callback_url": receiver.url})["id"]))
        hooked.append(str(_post(stack, {"task": "fail", "max_attempts": 1, "callback_url": receiver.url})["id"]))
        delayed = str(_post(stack, {"task": "echo", "delay": 60, "callback_url": receiver.url})["id"])
        assert http("DELETE", f"{stack.url}/jobs/{delayed}")[0] == 200
        hooked.append(delayed)
        plain = [str(_post(stack, {"task": "echo", "params": {"plain": i}})["id"]) for i in range(4)]
        # SIGKILL a worker while it runs sleeps: its jobs are reaped and run again, then end once
        time.sleep(0.8)
        victim = stack.workers[0]
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)

        def jobs() -> dict[str, dict[str, object]]:
            return {j: json.loads(http("GET", f"{stack.url}/jobs/{j}")[2]) for j in hooked + plain}

        wait_for(lambda: all(b["status"] in TERMINAL for b in jobs().values()), timeout=60, what="all jobs ended")
        wait_for(lambda: len(receiver.received) >= len(hooked), timeout=30, what="first attempts (answered 500)")
        receiver.answer = 200
        wait_for(lambda: all(b["webhook"]["delivered"] for j, b in jobs().items() if j in hooked),  # type: ignore[index]
                 timeout=60, what="every event delivered")
        final = jobs()
    finally:
        stack.stop()
    delivered: dict[str, set[str]] = {}
    for headers, body in receiver.received:
        event = Webhook(secret).verify(body, headers)  # every request carries a valid signature
        delivered.setdefault(headers["webhook-id"], set()).add(event["type"])
        assert event["data"]["id"] == headers["webhook-id"].split(":")[0]
    # each hooked job ended once: exactly one event id, of its final status; none for the plain jobs
    assert set(delivered) == {f"{j}:1" for j in hooked}
    for j in hooked:
        assert delivered[f"{j}:1"] == {f"job.{final[j]['status']}"}
        assert final[j]["webhook"]["attempts"][-1]["status_code"] == 200  # type: ignore[index]
    codes = [a["status_code"] for j in hooked for a in final[j]["webhook"]["attempts"]]  # type: ignore[index]
    assert 500 in codes  # answered 500 at first: those events were retried until delivered
    assert all("webhook" not in final[j] for j in plain)
    assert final[delayed]["status"] == "cancelled"
    assert final[hooked[-2]]["status"] == "failed"


def test_readme_webhook_examples_run_as_written(redis_url: str, tmp_path: Path) -> None:
    stack = ApiStack(tmp_path / "stack", redis_url, workers=1, extra_env=HOOK_ENV).start()
    try:
        out = run_blocks(stack, "## Webhooks", "## Worker")
        section = _section(README.read_text(), "## Webhooks", "## Worker")
        (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBS_")} | {"JOBS_URL": stack.url}
        py = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    finally:
        stack.stop()
    assert py.returncode == 0, py.stderr
    lines = out.splitlines()
    job = next(json.loads(line) for line in lines if line.startswith('{"') and '"webhook"' in line)
    assert job["webhook"]["delivered"] is True and job["webhook"]["attempts"][-1]["status_code"] == 204
    assert any(line.startswith(f"verified job.succeeded {job['id']}:1") for line in lines)
    assert not any(f"{job['id']}:1:subscription" in line for line in lines)  # succeeded: not in the filter
    sub = next(json.loads(line) for line in lines if line.startswith('{"url"'))
    assert sub["statuses"] == ["cancelled", "failed"]
    wf = next(json.loads(line) for line in lines if line.startswith('{"') and '"nodes"' in line)
    load, publish = (n["job_id"] for n in wf["nodes"])
    verified = {line.split()[2]: line.split()[1] for line in lines if line.startswith("verified ")}
    assert {k: v for k, v in verified.items() if k != f"{job['id']}:1"} == {
        f"{load}:1": "job.failed", f"{load}:1:subscription": "job.failed",
        f"{publish}:1": "job.cancelled", f"{publish}:1:subscription": "job.cancelled"}
    assert any(line.endswith(f"callback     204  {job['id']}:1") for line in lines)  # jobs webhook deliveries
    assert "webhook subscription deleted" in lines
    assert any('"/callback_url"' in line for line in lines)
