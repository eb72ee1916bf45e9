"""Tasks used by the tests (imported by test workers through JOBS_TASK_MODULES=sample_tasks)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import redis
from jobs_worker import BinaryResult, Context, task


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@task("record", params_schema={"type": "object", "properties": {"key": {"type": "string"},
                                                                  "seconds": {"type": "number"}}})
def record(params: Mapping[str, Any], ctx: Context) -> str:
    """Append ``<job id>:<attempt>`` to the list ``key`` (to count executions), then sleep ``seconds``."""
    _redis().rpush(params["key"], f"{ctx.job_id}:{ctx.attempt}")
    time.sleep(float(params.get("seconds", 0)))
    return ctx.job_id


@task("stuck", params_schema={"type": "object"}, timeout=1, max_attempts=1)
def stuck(params: Mapping[str, Any], ctx: Context) -> None:
    """Block in one C call (time.sleep) far longer than any timeout, never checking for cancel."""
    time.sleep(float(params.get("seconds", 3600)))


@task("big", params_schema={"type": "object"})
def big(params: Mapping[str, Any], ctx: Context) -> str:
    """Return a string of ``size`` bytes."""
    return "x" * int(params["size"])


@task("binary", params_schema={"type": "object"})
def binary(params: Mapping[str, Any], ctx: Context) -> BinaryResult:
    """Return raw bytes with a media type."""
    return BinaryResult(b"\x89PNG\r\n\x1a\n" + bytes(range(16)), "image/png")


@task("flaky", params_schema={"type": "object"}, max_attempts=3)
def flaky(params: Mapping[str, Any], ctx: Context) -> int:
    """Fail until attempt ``succeed_on``."""
    if ctx.attempt < int(params.get("succeed_on", 2)):
        raise ValueError(f"attempt {ctx.attempt} fails")
    return ctx.attempt


@task("crash", params_schema={"type": "object"}, max_attempts=1)
def crash(params: Mapping[str, Any], ctx: Context) -> None:
    """Kill the process running the task (as a segfault or OOM kill would)."""
    os._exit(13)


@task("gather", params_schema={"type": "object"})
def gather(params: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """Record this run (list ``key``) and return how many dependency results it could read, and their sum."""
    results = ctx.dependency_results()
    if params.get("key"):
        _redis().rpush(params["key"], f"{ctx.job_id}:{ctx.attempt}")
    return {"count": len(results), "sum": sum(v for v in results.values() if isinstance(v, int | float))}


@task("number", params_schema={"type": "object", "properties": {"n": {"type": "integer"},
                                                                  "seconds": {"type": "number"}}})
def number(params: Mapping[str, Any], ctx: Context) -> int:
    """Return ``n`` after ``seconds``."""
    time.sleep(float(params.get("seconds", 0)))
    return int(params.get("n", 0))


@task("routed", params_schema={"type": "object"}, queue=os.environ.get("TEST_ROUTED_QUEUE") or None)
def routed(params: Mapping[str, Any], ctx: Context) -> str:
    """Declares the queue named by TEST_ROUTED_QUEUE (so a test can route it to a queue of its own); sleeps
    ``seconds`` (default 0)."""
    time.sleep(float(params.get("seconds", 0)))
    return "routed"


@task("pipe_garbage", params_schema={"type": "object"})
def pipe_garbage(params: Mapping[str, Any], ctx: Context) -> None:
    """Write what the worker cannot read to the slot's pipe, as a task scribbling on its process's file
    descriptors would, then wait to be killed: ``what`` is ``pickle`` (a pickle that would run
    ``touch <marker>``, as the pipe's old format would have loaded it), ``oversize`` (a frame over the reply
    limit: JOBS_MAX_RESULT_BYTES + 1 MiB), ``ready`` (a second ready message) or ``bad`` (a done frame whose
    head is not JSON)."""
    conn = ctx._conn  # type: ignore[attr-defined]  # the slot child's end of the pipe (a ChildContext)
    what = params["what"]
    if what == "pickle":
        conn.send_bytes(b"cposix\nsystem\n(S'touch " + params["marker"].encode() + b"'\ntR.")
    elif what == "oversize":
        conn.send_bytes(b"D\x00\x00\x00\x00" + b"x" * (int(os.environ["JOBS_MAX_RESULT_BYTES"]) + (1 << 20)))
    elif what == "ready":  # a well-formed frame the worker does not expect while a job runs
        conn.send_bytes(b"R\x03\x00\x00\x00[1]")
    else:
        conn.send_bytes(b"D\x03\x00\x00\x00{[}result")
    time.sleep(60)


@task("payloads", params_schema={"type": "object"})
def payloads(params: Mapping[str, Any], ctx: Context) -> Any:
    """Return ``text`` (non-ASCII, megabytes) wrapped, every byte value ``repeat`` times as a binary result
    (``binary``), or raise an error whose message is ``text`` plus a lone surrogate (``fail``)."""
    if params.get("fail"):
        raise RuntimeError(params["text"] + "\udc80")
    if params.get("binary"):
        return BinaryResult(bytes(range(256)) * int(params["repeat"]), "application/x-test")
    return {"text": params["text"], "length": len(params["text"])}
