"""Tracing end to end: the real API (gunicorn) and worker processes export spans with the real OTLP/HTTP
exporter to a receiver on loopback; one trace runs from the submit request to every attempt of the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from jobs_core import tracing

from tests.api.stack import BIN, ApiStack, http
from tests.support.otlp_receiver import OtlpReceiver, Span
from tests.support.procs import wait_for

TRACING_ENV = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon, so the test does not wait 5 s per batch
}


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[ApiStack, OtlpReceiver]]:
    """One traced stack (built-in tasks and ``chatty``) for the tests that submit and then read only their own
    jobs' spans and log lines; the tests that kill or stop workers, or change a setting, start their own."""
    tmp_path = tmp_path_factory.mktemp("traced")
    (tmp_path / "obs_tasks.py").write_text(CHATTY)
    with OtlpReceiver() as receiver:
        stack = _stack(tmp_path, redis_url, receiver, workers=1, JOBS_TASK_MODULES="obs_tasks",
                       PYTHONPATH=str(tmp_path)).start()
        try:
            yield stack, receiver
        finally:
            stack.stop()


def _stack(tmp_path: Path, redis_url: str, receiver: OtlpReceiver, workers: int, **extra: str) -> ApiStack:
    env = {**TRACING_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, **extra}
    return ApiStack(tmp_path / "stack", redis_url, workers=workers, web_concurrency=2, extra_env=env)


def _submit(stack: ApiStack, task: str, params: dict[str, Any], **extra: Any) -> str:
    status, _, body = http("POST", stack.url + "/jobs", {"task": task, "params": params, **extra})
    assert status == 202, body
    return str(json.loads(body)["id"])


def _wait_status(stack: ApiStack, job_id: str, status: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        wait = "?wait=2" if status in ("succeeded", "failed") else ""  # a long-poll returns at the end only
        code, _, body = http("GET", f"{stack.url}/jobs/{job_id}{wait}")
        job = json.loads(body)
        return job if code == 200 and job["status"] == status else None

    return wait_for(done, timeout, 0.1, f"job {job_id} {status}")


def _spans_of(receiver: OtlpReceiver, job_id: str, want: int, timeout: float = 30) -> list[Span]:
    """Spans naming ``job_id`` (attribute), once at least ``want`` arrived."""
    def named() -> list[Span] | None:
        spans = [s for s in receiver.snapshot()
                 if s.attributes.get("jobs.job_id") == job_id or job_id in (s.attributes.get("jobs.job_ids") or [])]
        return spans if len(spans) >= want else None

    return wait_for(named, timeout, 0.1, f"{want} spans of job {job_id}")


def _log_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


CHATTY = """
from jobs_worker import task

@task("chatty")
def chatty(params, ctx):
    ctx.log.info("via ctx.log")
    print("printed by the task")
    return params
"""


def test_one_trace_from_the_submit_request_to_the_run(traced: tuple[ApiStack, OtlpReceiver], redis_url: str) -> None:
    stack, receiver = traced
    job_id = _submit(stack, "chatty", {"hello": "secret-param-value"})
    _wait_status(stack, job_id, "succeeded")
    spans = _spans_of(receiver, job_id, want=2)  # enqueue, run
    record = redis.Redis.from_url(redis_url).hgetall(f"{stack.namespace}:job:{job_id}")

    enqueue = next(s for s in spans if s.name == "enqueue chatty")
    run = next(s for s in spans if s.name == "run chatty")
    trace_id = enqueue.trace_id
    everything = [s for s in receiver.snapshot() if s.trace_id == trace_id]
    by_id = {s.span_id: s for s in everything}
    # the API's request span is the root; the enqueue and its Redis script call are in it
    request = by_id[enqueue.parent_id]
    assert request.service == "jobs-api" and request.name == "POST /jobs" and request.parent_id == ""
    assert enqueue.service == "jobs-api" and enqueue.kind == 4  # PRODUCER
    assert any(s.parent_id == enqueue.span_id and s.attributes.get("db.system") == "redis" for s in everything)
    # the worker's run span continues the same trace, child of the enqueue and linked to it
    assert run.service == "jobs-worker" and run.trace_id == trace_id and run.kind == 5  # CONSUMER
    assert run.parent_id == enqueue.span_id
    assert [(t, s) for t, s, _ in run.links] == [(trace_id, enqueue.span_id)]
    assert run.attributes["jobs.task"] == "chatty" and run.attributes["jobs.attempt"] == 1
    assert run.attributes["jobs.outcome"] == "succeeded"
    execute = next(s for s in everything if s.name == "execute chatty")
    assert execute.parent_id == run.span_id and execute.end_ns - execute.start_ns > 0
    # the outcome is stored by a Redis call inside the run span
    assert any(s.parent_id == run.span_id and s.attributes.get("db.system") == "redis" for s in everything)
    # the record carries the submission's context; no span carries params or results (not enabled)
    assert record[b"trace"].decode().split("-")[1:3] == [trace_id, enqueue.span_id]
    assert not any("secret-param-value" in json.dumps(s.attributes) for s in everything)

    # logs: one grep for the job id shows its story in the API and the worker, each line with the trace id
    # (the stack runs on: its worker may write the attempt's last line just after the job reads succeeded)
    story = {"job started", "job attempt ended", "via ctx.log", "printed by the task"}  # the task's lines too

    def worker_story() -> list[dict[str, Any]]:
        lines = [e for e in _log_lines(stack.workdir / "worker-0.log") if e.get("job") == job_id]
        return lines if {e["msg"] for e in lines} >= story else []

    worker_lines = wait_for(worker_story, 15, 0.1, f"the worker's log lines of job {job_id}")
    api_lines = [e for e in _log_lines(stack.error_log) if e.get("job") == job_id]
    assert [e["msg"] for e in api_lines] == ["job submitted"]
    for entry in api_lines + worker_lines:
        assert entry["trace_id"] == trace_id and entry["task"] == "chatty" and "attempt" in entry


def test_each_attempt_is_a_span_when_the_first_worker_is_killed(tmp_path: Path, redis_url: str,
                                                                 receiver: OtlpReceiver) -> None:
    stack = _stack(tmp_path, redis_url, receiver, workers=1).start()
    try:
        job_id = _submit(stack, "sleep", {"seconds": 3}, max_attempts=3)
        _wait_status(stack, job_id, "running", timeout=30)
        first = stack.workers[0]
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its slot child: attempt 1 never ends there
        first.wait(10)
        env = dict(stack.env, JOBS_WORKER_HEALTH_FILE=str(stack.workdir / "worker-1.alive"))
        with open(stack.workdir / "worker-1.log", "ab") as log:
            stack.workers.append(subprocess.Popen([str(BIN / "jobs-worker")], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
        job = _wait_status(stack, job_id, "succeeded", timeout=60)
        assert job["attempts"] == 2
        spans = _spans_of(receiver, job_id, want=3)  # enqueue, lost run of attempt 1, run of 2
    finally:
        stack.stop()

    enqueue = next(s for s in spans if s.name == "enqueue sleep")
    runs = sorted((s for s in spans if s.name == "run sleep"), key=lambda s: s.attributes["jobs.attempt"])
    assert [r.attributes["jobs.attempt"] for r in runs] == [1, 2]
    lost, second = runs
    assert lost.attributes["jobs.outcome"] == "lost" and lost.status_code == 2  # ERROR
    assert lost.attributes["error.type"] == "WorkerLost"
    assert second.attributes["jobs.outcome"] == "succeeded"
    assert lost.attributes["jobs.reaped_by"] == second.attributes["jobs.worker"]  # the survivor recorded it
    assert lost.start_ns < second.start_ns
    for run in runs:  # one trace, each attempt a child of the submission and linked to it
        assert run.trace_id == enqueue.trace_id and run.parent_id == enqueue.span_id
        assert [(t, s) for t, s, _ in run.links] == [(enqueue.trace_id, enqueue.span_id)]


def test_retries_and_hand_backs_are_spans_of_the_same_trace(tmp_path: Path, redis_url: str,
                                                             receiver: OtlpReceiver) -> None:
    stack = _stack(tmp_path, redis_url, receiver, workers=1).start()
    try:
        failing = _submit(stack, "fail", {}, max_attempts=2)
        _wait_status(stack, failing, "failed")
        slow = _submit(stack, "sleep", {"seconds": 4})
        _wait_status(stack, slow, "running", timeout=30)
        first = stack.workers[0]
        first.send_signal(signal.SIGTERM)  # drain ...
        time.sleep(0.3)
        first.send_signal(signal.SIGTERM)  # ... no: hand the running job back now
        first.wait(20)
        env = dict(stack.env, JOBS_WORKER_HEALTH_FILE=str(stack.workdir / "worker-1.alive"))
        with open(stack.workdir / "worker-1.log", "ab") as log:
            stack.workers.append(subprocess.Popen([str(BIN / "jobs-worker")], env=env, stdout=log,
                                                  stderr=subprocess.STDOUT, start_new_session=True))
        _wait_status(stack, slow, "succeeded", timeout=60)
        retried = _spans_of(receiver, failing, want=3)  # enqueue + 2 attempts
        handed = _spans_of(receiver, slow, want=3)  # enqueue + handed back + finished
    finally:
        stack.stop()
    for spans, outcomes in ((retried, ["failed", "retry"]), (handed, ["handback", "succeeded"])):
        enqueue = next(s for s in spans if s.name.startswith("enqueue "))
        runs = [s for s in spans if s.name.startswith("run ")]
        assert sorted(r.attributes["jobs.outcome"] for r in runs) == outcomes
        assert all(r.trace_id == enqueue.trace_id and r.parent_id == enqueue.span_id for r in runs)
    assert sorted(r.attributes["jobs.attempt"] for r in retried if r.name.startswith("run ")) == [1, 2]
    # handed back by the first worker, finished by the second: two workers, one trace
    assert len({r.attributes["jobs.worker"] for r in handed if r.name.startswith("run ")}) == 2


def test_a_workflow_dependent_runs_in_the_submission_trace(traced: tuple[ApiStack, OtlpReceiver]) -> None:
    stack, receiver = traced
    flow = {"nodes": [{"name": "fetch", "task": "echo", "params": {"a": 1}},
                      {"name": "join", "task": "echo", "depends_on": ["fetch"]}]}
    status, _, body = http("POST", stack.url + "/workflows", flow)
    assert status in (201, 202), body
    ids = {n["name"]: n["job_id"] for n in json.loads(body)["nodes"]}
    _wait_status(stack, ids["join"], "succeeded")
    _spans_of(receiver, ids["fetch"], want=2)
    _spans_of(receiver, ids["join"], want=2)  # the enqueue (both ids) and its run, released later
    spans = receiver.snapshot()
    enqueue = next(s for s in spans if s.name == "enqueue echo" and ids["join"] in (s.attributes.get("jobs.job_ids")
                                                                                    or []))
    runs = {s.attributes["jobs.job_id"]: s for s in spans if s.name == "run echo"}
    request = next(s for s in spans if s.span_id == enqueue.parent_id)
    assert request.name == "POST /workflows" and request.trace_id == enqueue.trace_id
    for name in ("fetch", "join"):
        assert runs[ids[name]].trace_id == enqueue.trace_id and runs[ids[name]].parent_id == enqueue.span_id
    assert runs[ids["join"]].start_ns >= runs[ids["fetch"]].end_ns - 50_000_000  # released after fetch ended


def test_params_and_results_go_into_spans_only_when_enabled(tmp_path: Path, redis_url: str,
                                                             receiver: OtlpReceiver) -> None:
    stack = _stack(tmp_path, redis_url, receiver, workers=1, JOBS_TRACE_PARAMS="1").start()
    try:
        job_id = _submit(stack, "echo", {"hello": "visible"})
        _wait_status(stack, job_id, "succeeded")
        spans = _spans_of(receiver, job_id, want=2)
    finally:
        stack.stop()
    enqueue = next(s for s in spans if s.name == "enqueue echo")
    run = next(s for s in spans if s.name == "run echo")
    assert json.loads(enqueue.attributes["jobs.params"]) == [{"hello": "visible"}]
    assert json.loads(run.attributes["jobs.params"]) == {"hello": "visible"}
    assert json.loads(run.attributes["jobs.result"]) == {"hello": "visible"}


def test_tracing_is_off_without_otel_variables() -> None:
    assert not tracing.configured({})
    assert not tracing.configured({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert not tracing.configured({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"})
    assert tracing.configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.configured({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.enabled()  # the test process never configured it


def test_with_tracing_off_the_sdk_is_never_imported(redis_url: str) -> None:
    """Off means off: building the API and a worker's store and submitting a job start no tracer provider
    and import no trace SDK, instrumentation or exporter. (redis-py itself imports the OpenTelemetry API
    and metrics SDK when installed, for its own metrics, which stay off unless configured.)"""
    code = (
        "import sys; from jobs_api.app import create_app; from jobs_worker.spans import RunSpans\n"
        "app = create_app(); c = app.test_client()\n"
        "c.post('/jobs', json={'task': 'echo', 'params': {}})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk.trace', "
        "'opentelemetry.instrumentation', 'opentelemetry.exporter'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({"REDIS_URL": redis_url, "JOBS_KEY_PREFIX": f"off{os.getpid()}"})
    out = subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_with_tracing_off_records_carry_no_trace_field(store: Any) -> None:
    job, _ = store.enqueue("echo", {"x": 1})
    assert store.redis.hget(store.keys.job(job.id), "trace") is None
    assert tracing.traceparent() == ""
