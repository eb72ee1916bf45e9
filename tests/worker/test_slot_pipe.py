"""The pipe between a worker and its slot children: JSON frames, never pickle; unreadable frames are refused.

The first tests drive ``jobs_worker.pipe`` over real OS pipes in this process; the last run real workers
whose task writes garbage to its slot's pipe.
"""

from __future__ import annotations

import io
import json
import pickle
import pickletools
import re
import threading
from collections.abc import Callable, Iterator
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from jobs_core.delivery import ClaimedJob
from jobs_core.errors import SlotMessageInvalid
from jobs_core.model import JobStatus
from jobs_core.store import JobStore
from jobs_worker import pipe

from .conftest import StartWorker

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 16 << 20
#: protocol-0 pickle of ``os.system("touch /tmp/...")``: what loading it would run
EXPLOIT = b"cposix\nsystem\n(S'touch /tmp/jobs-pipe-test-pwned'\ntR."


@pytest.fixture
def conns() -> Iterator[tuple[Connection, Connection]]:
    """A real OS pipe pair, as a slot has (parent end, child end)."""
    parent, child = Pipe()
    yield parent, child
    parent.close()
    child.close()


def across(send: Callable[[], None], receive: Callable[[], Any]) -> Any:
    """What ``receive`` returns while ``send`` writes from another thread (megabytes exceed a pipe's buffer)."""
    writer = threading.Thread(target=send)
    writer.start()
    try:
        return receive()
    finally:
        writer.join(10)


def test_a_job_and_stop_reach_the_child_intact(conns: tuple[Connection, Connection]) -> None:
    parent, child = conns
    params = {"text": "ünïcødé ✓ 日本語 \U0001f600 " * 100_000, "n": [1, 2.5, None, True], "nested": {"a": {}}}
    job = ClaimedJob(id="j-1", task="tâche", params=params, timeout=5.0, attempt=2, max_attempts=3, queue="q-é",
                     owner="tenant-ß", trace="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    got = across(lambda: pipe.send_job(parent, job, 1764490000.123456, True), lambda: pipe.receive_job(child))
    assert len(pipe.frame(pipe.JOB, (params,))) > 2_000_000  # megabytes, more than a pipe's buffer
    assert got == pipe.JobMessage("j-1", "tâche", 2, 3, "q-é", 1764490000.123456, "tenant-ß", job.trace, True,
                                 params)
    bare = ClaimedJob(id="j-2", task="echo", params={}, timeout=0, attempt=1, max_attempts=1)
    pipe.send_job(parent, bare, 12.0)
    assert pipe.receive_job(child) == pipe.JobMessage("j-2", "echo", 1, 1, "jobs", 12.0, None, None, False, {})
    pipe.send_stop(parent)
    assert pipe.receive_job(child) is None


def test_params_as_deep_as_redis_holds_them(conns: tuple[Connection, Connection]) -> None:
    """orjson encodes 254 levels: params that deep were stored, so they must reach the child too."""
    parent, child = conns
    params: dict[str, Any] = {}
    for _ in range(253):
        params = {"a": params}
    with pytest.raises(TypeError):  # one level deeper, as a field of the head, they would not encode
        pipe.frame(pipe.JOB, (params,))
    job = ClaimedJob(id="j-deep", task="echo", params=params, timeout=5.0, attempt=1, max_attempts=1)
    pipe.send_job(parent, job, 1.0)
    assert pipe.receive_job(child) == pipe.JobMessage("j-deep", "echo", 1, 1, "jobs", 1.0, None, None, False,
                                                             params)


def test_a_job_whose_params_are_not_json_is_refused(conns: tuple[Connection, Connection]) -> None:
    parent, child = conns
    parent.send_bytes(raw(b"J", b'["j","t",1,1,"q",null,null,null,false]', b"{not json"))
    with pytest.raises(SlotMessageInvalid, match="the params are not JSON"):
        pipe.receive_job(child)


@pytest.mark.parametrize("message", [
    ("ready", 4242),
    ("progress", None, None),
    ("progress", 0.5, "étape 2/4 — ✓"),
    ("done", b'{"a":"\xc3\xa9"}', "application/json"),
    ("done", b"", "application/octet-stream"),
    ("done", bytes(range(256)) * 8192, "image/png"),  # 2 MiB, every byte value
    ("done", EXPLOIT, "application/octet-stream"),  # a result that happens to be a pickle stays bytes
    ("error", "ValueError", "naïve ✗", "Traceback (most recent call last):\n  …\nValueError: naïve ✗\n",
     False, True, 1.5),
    ("error", "JobCancelled", "job j-1 was cancelled", None, True, False, None),
    ("error", "Retry", "later", None, False, True, 0),
    ("finished", "succeeded"),  # the child stored its job's success itself (jobs_worker.child_finish)
    ("lost", "cancelled"),  # ... and the script refused it: the job had been cancelled meanwhile
])
def test_every_reply_comes_back_as_sent(conns: tuple[Connection, Connection], message: tuple[Any, ...]) -> None:
    parent, child = conns
    assert across(lambda: pipe.send_reply(child, message), lambda: pipe.receive_reply(parent, LIMIT)) == message


def test_a_lone_surrogate_is_spelled_out(conns: tuple[Connection, Connection]) -> None:
    """JSON text is UTF-8: an exception message holding an undecodable byte arrives readable, not lost."""
    parent, child = conns
    pipe.send_reply(child, ("error", "OSError", "no file b'\udc80.txt'", None, False, True, None))
    assert pipe.receive_reply(parent, LIMIT)[2] == "no file b'\\udc80.txt'"


def test_a_pickle_is_refused_unloaded(conns: tuple[Connection, Connection]) -> None:
    """The old format (a pickle) and a pickle that runs a command are unknown frames, never loaded."""
    parent, child = conns
    assert "GLOBAL     'posix system'" in _disassembly(EXPLOIT)  # it is a real pickle that would call os.system
    old_format = pickle.dumps(("done", b"{}", "application/json"), pickle.HIGHEST_PROTOCOL)  # never loaded here
    for data in (EXPLOIT, old_format):
        child.send_bytes(data)
        with pytest.raises(SlotMessageInvalid, match="unknown message kind"):
            pipe.receive_reply(parent, LIMIT)
        with pytest.raises(SlotMessageInvalid, match="unknown message kind"):
            pipe.parse(data)
    assert not Path("/tmp/jobs-pipe-test-pwned").exists()


def _disassembly(data: bytes) -> str:
    out = io.StringIO()
    pickletools.dis(data, out)  # reads the opcodes without running them
    return out.getvalue()


def raw(kind: bytes, head: bytes, payload: bytes = b"") -> bytes:
    """A frame built by hand: kind, the head's length (uint32 LE), head, payload."""
    return kind + len(head).to_bytes(4, "little") + head + payload


@pytest.mark.parametrize(("data", "error"), [
    (b"", "shorter than its 5-byte header"),
    (b"D\x01\x00", "shorter than its 5-byte header"),
    (raw(b"Z", b"[]"), "unknown message kind 0x5a"),
    (b"D\x40\x00\x00\x00" + b'["application/json"]{}', "D frame cut short: a head of 64 bytes, 22 sent"),
    (raw(b"D", b'["a",'), "the head is not JSON"),
    (raw(b"D", b"{}"), "does not hold the kind's fields"),
    (raw(b"D", b"[]"), "does not hold the kind's fields"),
    (raw(b"D", b"[5]"), "does not hold the kind's fields"),
    (raw(b"R", b"[1,2]"), "does not hold the kind's fields"),
    (raw(b"P", b'["x",null]'), "does not hold the kind's fields"),
    (raw(b"E", b'["T","m",null,0,1,null]'), "does not hold the kind's fields"),  # the flags are bools
    (raw(b"J", b"[]"), "does not hold the kind's fields"),
    (raw(b"J", b'["j","t",1,1,"q",null,null,null,{}]'), "does not hold the kind's fields"),
    (raw(b"J", b'["j","t",1,1,"q",null,null,null,1]', b"{}"), "does not hold the kind's fields"),  # not a bool
    (raw(b"F", b"[]"), "does not hold the kind's fields"),
    (raw(b"L", b"[null]"), "does not hold the kind's fields"),
    (raw(b"P", b"[null,null]", b"tail"), "4 bytes after the head of a kind without payload"),
    (raw(b"R", b"[7]", b"\x00"), "1 bytes after the head of a kind without payload"),
])
def test_malformed_frames_are_refused(conns: tuple[Connection, Connection], data: bytes, error: str) -> None:
    parent, child = conns
    with pytest.raises(SlotMessageInvalid, match=re.escape(error)):
        pipe.parse(data)
    child.send_bytes(data)
    with pytest.raises(SlotMessageInvalid, match=re.escape(error)):
        pipe.receive_reply(parent, LIMIT)


def test_each_side_refuses_the_other_sides_kinds(conns: tuple[Connection, Connection]) -> None:
    parent, child = conns
    parent.send_bytes(pipe.frame(pipe.READY, (1,)))
    with pytest.raises(SlotMessageInvalid, match="not a message the parent sends"):
        pipe.receive_job(child)
    child.send_bytes(pipe.frame(pipe.STOP, ()))
    with pytest.raises(SlotMessageInvalid, match="not a message a child sends"):
        pipe.receive_reply(parent, LIMIT)


def test_an_oversized_frame_is_refused_unread(conns: tuple[Connection, Connection]) -> None:
    parent, child = conns
    child.send_bytes(pipe.frame(pipe.DONE, ("application/json",), b"x" * 1000))
    with pytest.raises(SlotMessageInvalid, match="over the limit of 999 bytes"):
        pipe.receive_reply(parent, 999)
    with pytest.raises(OSError, match="write-only"):  # its length was read, not its body: no more reads
        parent.recv_bytes()


def test_no_pickle_or_marshal_in_product_code() -> None:
    """The developers' guide: JSON only between our processes and in Redis; loading a pickle runs code."""
    found = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
             for top in ("services", "libs") for p in (ROOT / top).rglob("*.py") if ".venv" not in p.parts
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.match(r"\s*(import|from)\s+(c?pickle|marshal|dill|shelve)\b", line)]
    assert found == []


# ------------------------------------------------------------------ real workers
def test_unreadable_child_messages_are_crashed_attempts(store: JobStore, workers: StartWorker, tmp_path: Path) -> None:
    """A pickle that would run a command, a frame over the limit, a second "ready" and a bad head: each
    attempt fails as if its child had crashed (retried while attempts remain), nothing is loaded, the worker
    carries on."""
    marker = tmp_path / "pwned"
    jobs = {what: store.enqueue("pipe_garbage", {"what": what, "marker": str(marker)}, max_attempts=2)[0]
            for what in ("pickle", "oversize", "ready", "bad")}
    after, _ = store.enqueue("echo", {"still": "working"})
    assert workers("--burst", JOBS_MAX_RESULT_BYTES="1000").wait(90) == 0
    for what, job in jobs.items():
        failed = store.get(job.id)
        assert failed.status is JobStatus.FAILED and failed.attempts == 2, (what, failed)
        assert failed.error is not None and failed.error.type == "SlotMessageInvalid", (what, failed.error)
    assert "over the limit of 1049576 bytes" in str(store.get(jobs["oversize"].id).error)
    assert "unknown message kind 0x63" in str(store.get(jobs["pickle"].id).error)
    assert not marker.exists()
    assert store.get_result(after.id).data == b'{"still":"working"}'


def test_large_non_ascii_and_binary_payloads_through_a_worker(store: JobStore, workers: StartWorker) -> None:
    text = "ünïcødé ✓ 日本語 \U0001f600 " * 150_000  # ~4 MB of UTF-8 each way
    echo, _ = store.enqueue("payloads", {"text": text})
    deep: dict[str, Any] = {}
    for _ in range(253):  # as deep as orjson encodes: stored, so it must reach the task
        deep = {"a": deep}
    deep_echo, _ = store.enqueue("echo", deep)
    blob, _ = store.enqueue("payloads", {"binary": True, "repeat": 4096})
    fail, _ = store.enqueue("payloads", {"fail": True, "text": "échec ✗ "}, max_attempts=1)
    assert workers("--burst").wait(60) == 0
    assert json.loads(store.get_result(echo.id).data) == {"text": text, "length": len(text)}
    assert json.loads(store.get_result(deep_echo.id).data) == deep
    result = store.get_result(blob.id)
    assert result.media_type == "application/x-test" and result.data == bytes(range(256)) * 4096
    failed = store.get(fail.id)
    assert failed.error is not None and failed.error.message == "échec ✗ \\udc80"


def test_slot_child_imports_stay_lean() -> None:
    """The fork server preloads the child's modules, and every slot child is a copy of it: importing the
    pipe must not pull redis-py or OpenTelemetry in (a type-only import once added ~28 MB RSS per child)."""
    import subprocess
    import sys

    probe = (
        "import sys, jobs_worker.child, jobs_worker.builtin_tasks\n"
        "heavy = ('redis', 'jobs_core.delivery', 'jobs_core.store', 'opentelemetry')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
