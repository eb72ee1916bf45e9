"""``jobs_worker.testing``: a task run in-process, as a user's own unit test would (no Redis, no worker)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from jobs_core.errors import InvalidParams, JobCancelled, Reject, ResultNotJSON
from jobs_worker import BinaryResult, Context, task
from jobs_worker.testing import LocalContext, run_task


@task("t_resize", params_schema={
    "type": "object",
    "properties": {"width": {"type": "integer", "minimum": 1}, "fmt": {"type": "string", "default": "png"}},
    "required": ["width"],
    "additionalProperties": False,
}, max_attempts=4)
def t_resize(params, ctx: Context):  # type: ignore[no-untyped-def]
    ctx.progress(0.5, "resizing")
    ctx.log.info("resized", extra={"width": params["width"]})
    return {"width": params["width"], "fmt": params["fmt"], "attempt": ctx.attempt, "of": ctx.max_attempts,
            "pair": (1, 2)}


@task("t_misc")
def t_misc(params, ctx: Context):  # type: ignore[no-untyped-def]
    kind = params["kind"]
    if kind == "set":
        return {"tags": {"a"}}
    if kind == "bytes":
        return BinaryResult(b"\x89PNG", "image/png")
    if kind == "reject":
        raise Reject("never")
    ctx.check_cancelled()
    return None


def test_defaults_schema_and_result_as_a_client_reads_it(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ctx = LocalContext(task="t_resize", attempt=2, max_attempts=4)
    result = run_task("t_resize", {"width": 10}, ctx=ctx)
    assert result == {"width": 10, "fmt": "png", "attempt": 2, "of": 4, "pair": [1, 2]}  # JSON round trip
    assert ctx.progress_updates == [(0.5, "resizing")]
    [record] = [r for r in caplog.records if r.getMessage() == "resized"]
    assert record.job == ctx.job_id and record.task == "t_resize" and record.attempt == 2  # type: ignore[attr-defined]
    assert record.width == 10  # type: ignore[attr-defined]
    assert run_task(t_resize, {"width": 3})["of"] == 4  # by function too; max_attempts from the task


def test_params_are_validated_as_the_api_does() -> None:
    with pytest.raises(InvalidParams) as e:
        run_task("t_resize", {"width": 0, "extra": 1})
    assert sorted(p for p, _ in e.value.errors) == ["/params", "/params/width"]
    assert "Additional properties are not allowed ('extra' was unexpected)" in str(e.value)


def test_results_and_errors_as_the_worker_sees_them() -> None:
    with pytest.raises(ResultNotJSON, match=r"result\['tags'\]: set"):
        run_task("t_misc", {"kind": "set"})
    assert run_task("t_misc", {"kind": "bytes"}) == BinaryResult(b"\x89PNG", "image/png")
    with pytest.raises(Reject):
        run_task("t_misc", {"kind": "reject"})
    ctx = LocalContext(task="t_misc")
    ctx.cancel()
    with pytest.raises(JobCancelled):
        run_task("t_misc", {"kind": "other"}, ctx=ctx)
    with pytest.raises(LookupError, match="no task 'nope' is registered"):
        run_task("nope")


def test_a_users_own_pytest_file_runs_as_documented(tmp_path: Path) -> None:
    """What the README shows: the user's module and their test file in their folder, plain ``pytest``."""
    (tmp_path / "mytasks.py").write_text(textwrap.dedent("""
        from jobs_worker import task

        @task("double", params_schema={"type": "object", "properties": {"n": {"type": "integer", "default": 2}}})
        def double(params, ctx):
            return params["n"] * 2
    """))
    (tmp_path / "test_mytasks.py").write_text(textwrap.dedent("""
        import pytest
        from jobs_core.errors import InvalidParams
        from jobs_worker.testing import run_task

        import mytasks

        def test_double():
            assert run_task("double") == 4
            assert run_task("double", {"n": 5}) == 10
            with pytest.raises(InvalidParams):
                run_task("double", {"n": "five"})
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mytasks.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
