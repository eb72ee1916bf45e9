"""The job event stream: one entry per script call (one XADD however many jobs it changed), decoded by
jobs_core.event_stream for every reader; every command that emits flushes its buffer before it returns."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from jobs_core import event_stream
from jobs_core.config import Settings
from jobs_core.delivery import Finish
from jobs_core.model import Result, Submission
from jobs_core.store import JobStore
from support.redis_server import RedisServer

LUA = resources.files("jobs_core") / "lua"
COMMANDS = sorted(p.name[:-4] for p in LUA.iterdir() if p.name.endswith(".lua"))
_EMITS = re.compile(r"\bemit(?:_ended)?\(")


_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"\s*$', re.M)


def _included(text: str) -> set[str]:
    """The includes a Lua file pulls in, transitively."""
    seen: set[str] = set()
    todo = _INCLUDE.findall(text)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += _INCLUDE.findall((LUA / "includes" / f"{name}.lua").read_text(encoding="utf-8"))
    return seen


def _emitting() -> set[str]:
    """Functions whose call may buffer a job event: emit, emit_ended and every function of an include that
    includes emit (conservative: a helper there that never emits counts too)."""
    names = {"emit", "emit_ended"}
    for path in (LUA / "includes").iterdir():
        text = path.read_text(encoding="utf-8")
        if path.name != "emit.lua" and "emit" in _included(text):
            names |= set(re.findall(r"^local function ([a-z_]+)\(", text, re.M))
    return names


def unflushed(text: str, emitting: set[str]) -> list[int]:
    """Lines (1-based) of a command file where it may return, or end, with job events still in the buffer:
    a return after a call that may emit with no emit_flush() between, in text order, or inside a loop that
    such a call is in (a later pass of the loop returns after an earlier one emitted)."""
    lines = [line.split("--", 1)[0].rstrip() for line in text.splitlines()]  # no '--' in their strings
    call = re.compile(r"\b(?:" + "|".join(sorted(emitting)) + r")\(")
    ret = re.compile(r"\breturn\b")

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    def block(start: int) -> list[str]:
        for k in range(start + 1, len(lines)):
            if lines[k].strip() and indent(lines[k]) <= indent(lines[start]):
                return lines[start:k + 1]
        return lines[start:]

    emitting_loops = []
    for i, line in enumerate(lines):
        if re.match(r"\s*(for|while)\b", line) and any(call.search(x) for x in block(i)):
            emitting_loops.append((i, i + len(block(i))))
    bad, dirty = [], False
    for i, line in enumerate(lines):
        if call.search(line):
            dirty = True
        if "emit_flush()" in line:
            dirty = False
        if ret.search(line) and (dirty or any(a < i < b for a, b in emitting_loops)):
            bad.append(i + 1)
    last = max((i for i, line in enumerate(lines) if line.strip()), default=0)
    if dirty and not ret.match(lines[last]):  # falls off the end (a top-level return there is checked above)
        bad.append(last + 1)
    return bad


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_that_emits_flushes_before_it_returns(name: str) -> None:
    """A command that buffers job events and returns without emit_flush() would lose them silently."""
    text = (LUA / f"{name}.lua").read_text(encoding="utf-8")
    if "emit" not in _included(text):
        assert "emit_flush" not in text
        return
    assert "emit_flush()" in text
    assert unflushed(text, _emitting()) == [], f"{name}.lua may return with unwritten job events"


def test_the_flush_check_finds_a_missing_flush() -> None:
    emitting = _emitting()
    assert {"finish_one", "claim_batch", "cancel_one", "retry_one", "release_dependents"} <= emitting
    assert unflushed("local r = finish_one(a)\nreturn r\n", emitting) == [2]
    assert unflushed("return cancel_one(a)\n", emitting) == [1]
    assert unflushed("emit(p, id, 'queued')\n", emitting) == [1]  # falls off the end
    assert unflushed("for i = 1, 3 do\n  if x then return 1 end\n  emit(p, i)\nend\nemit_flush()\nreturn 2\n",
                     emitting) == [2]
    assert unflushed("if x then return 0 end\nemit(p, 1)\nemit_flush() -- ok\nreturn 2\n", emitting) == []
    text = (LUA / "finish_claim.lua").read_text(encoding="utf-8")
    assert "\nemit_flush()\n" in text
    assert unflushed(text.replace("\nemit_flush()\n", "\n"), emitting) != []


def test_only_emit_and_queue_control_write_the_event_stream() -> None:
    """Every job event goes through the buffer (a direct XADD would be a second entry per call)."""
    for path in [*LUA.iterdir(), *(LUA / "includes").iterdir()]:
        if path.name.endswith(".lua") and path.name not in ("emit.lua", "queue_control.lua"):
            assert "'stream'" not in path.read_text(encoding="utf-8"), path.name


def _entries(store: JobStore, after: str) -> list[tuple[str, dict[str, str]]]:
    return [(eid.decode(), event_stream.decode_fields(f))
            for eid, f in store.redis.xrange(store.keys.event_stream, f"({after}")]


def test_a_single_change_keeps_the_single_event_form(store: JobStore) -> None:
    start = store.last_event_id()
    job, _ = store.enqueue("echo", {}, owner="alpha")
    [(eid, fields)] = _entries(store, start)
    assert fields == {"job": job.id, "status": "queued", "tenant": "alpha", "queue": store.keys.queue_name}
    assert event_stream.expand(eid, fields) == [(eid, fields)]
    # the job is dated by the Redis clock the stream entry id carries
    assert int(job.created_at.timestamp() * 1000) == int(eid.split("-")[0])


def test_a_batch_enqueue_is_one_entry_of_every_queued_event_in_order(store: JobStore) -> None:
    start = store.last_event_id()
    jobs, _ = store.enqueue_many([Submission("echo", {"i": i}) for i in range(5)], owner="beta")
    [(eid, fields)] = _entries(store, start)
    assert set(fields) == {"jobs"}
    expanded = event_stream.expand(eid, fields)
    assert expanded == [(f"{eid}:{k}", {"job": j.id, "status": "queued", "tenant": "beta",
                                        "queue": store.keys.queue_name}) for k, j in enumerate(jobs)]
    assert {int(j.created_at.timestamp() * 1000) for j in jobs} == {int(eid.split("-")[0])}


def test_a_finish_and_claim_call_is_one_entry(store: JobStore) -> None:
    """The worker's hot path: finishes and claims of one call, every tenant's, in the order they happened."""
    a = store.enqueue("echo", {}, owner="alpha")[0].id
    b = store.enqueue("echo", {}, owner="beta")[0].id
    claimed = store.claim("w1", 2)
    assert [c.id for c in claimed] == [a, b]
    c = store.enqueue("echo", {}, owner="alpha")[0].id
    d = store.enqueue("echo", {}, owner="beta")[0].id
    start = store.last_event_id()
    statuses, more = store.finish_and_claim(
        "w1", [Finish(a, claimed[0].attempt, "succeeded", result=Result(b"1", "application/json")),
               Finish(b, claimed[1].attempt, "retry")], 2)
    assert statuses == ["succeeded", "queued"] and [j.id for j in more] == [c, d]
    [(eid, fields)] = _entries(store, start)
    assert [(e["job"], e["status"], e["tenant"]) for _, e in event_stream.expand(eid, fields)] == [
        (a, "succeeded", "alpha"), (b, "queued", "beta"), (c, "running", "alpha"), (d, "running", "beta")]
    # a call that changed nothing writes nothing
    start = store.last_event_id()
    assert [j.id for j in store.finish_and_claim("w1", [], 5)[1]] == [b]
    assert store.finish_and_claim("w1", [], 5)[1] == []
    assert [f for _, f in _entries(store, start)] == [
        {"job": b, "status": "running", "tenant": "beta", "queue": store.keys.queue_name}]


@pytest.mark.parametrize("tenant", ["plain-T_1.x", 'we"ird\\ /\u00fc\u2603\t\x01'])
def test_an_entry_of_several_events_is_json_whatever_the_tenant_name(store: JobStore, tenant: str) -> None:
    """An entry of several events decodes to the names as submitted, whatever they hold (quotes,
    backslashes, '/', control characters, non-ASCII: the library takes any owner)."""
    ids = [store.enqueue("echo", {}, owner=tenant)[0].id for _ in range(3)]
    other = store.enqueue("echo", {}, owner="o")[0].id
    start = store.last_event_id()
    claimed = store.claim("w1", 4)
    [(eid, fields)] = _entries(store, start)
    assert [(c.id, c.owner) for c in claimed] == [*((i, tenant) for i in ids), (other, "o")]
    assert [(e["job"], e["status"], e["tenant"], e["queue"]) for _, e in event_stream.expand(eid, fields)] == [
        *((i, "running", tenant, store.keys.queue_name) for i in ids), (other, "running", "o", store.keys.queue_name)]


def test_read_events_resumes_inside_an_entry(store: JobStore) -> None:
    start = store.last_event_id()
    jobs, _ = store.enqueue_many([Submission("echo", {}) for _ in range(3)], owner="alpha")
    single = store.enqueue("echo", {}, owner="alpha")[0].id
    batch = store.read_events(start, 1)
    ids = [i for i, _ in batch.events]
    assert [e["job"] for _, e in batch.events] == [*(j.id for j in jobs), single]
    entry = ids[0].split(":")[0]
    assert ids[:3] == [f"{entry}:{k}" for k in range(3)] and ":" not in ids[3]
    assert batch.cursor == ids[3]
    # from the middle of the entry: its rest, and the next read goes on after the entry
    rest = store.read_events(ids[0], 1)
    assert [i for i, _ in rest.events] == ids[1:3] and rest.cursor == entry
    assert [i for i, _ in store.read_events(rest.cursor, 1).events] == ids[3:]
    # from its last event: straight on after it
    assert [i for i, _ in store.read_events(ids[2], 1).events] == ids[3:]
    assert store.event_kept(ids[1]) and store.event_kept(entry)


def test_event_ids() -> None:
    assert event_stream.is_event_id("1-0") and event_stream.is_event_id("1796000000000-3:41")
    for bad in ("1", "1-0:", "1-0:x", ":1", "1-0:1:2", "99999999999999999999-0", "1-0 ", "²-1", "1-0:1234567"):
        assert not event_stream.is_event_id(bad), bad
    assert event_stream.split_id("5-1") == ("5-1", 0)
    assert event_stream.split_id("5-1:0") == ("5-1", 1) and event_stream.split_id("5-1:7") == ("5-1", 8)
    assert event_stream.entry_of("5-1:7") == "5-1" == event_stream.entry_of("5-1")


def test_the_decoder_reads_both_forms_and_skips_queue_changes() -> None:
    single = {b"job": b"j1", b"status": b"running", b"tenant": b"t", b"queue": b"q"}
    assert event_stream.job_events(single) == [{"job": "j1", "status": "running", "tenant": "t", "queue": "q"}]
    several = {b"jobs": b'[["j1","queued","t","q"],["j2","running","u","r"]]'}
    assert [e["job"] for e in event_stream.job_events(several)] == ["j1", "j2"]
    queue = {b"kind": b"queue", b"queue": b"q", b"change": b"pause"}
    assert event_stream.job_events(queue) == []
    assert event_stream.expand(b"9-0", queue) == [("9-0", {"kind": "queue", "queue": "q", "change": "pause"})]


def test_the_stream_keeps_about_ten_thousand_events_whatever_the_entry_size(private_redis: RedisServer) -> None:
    """An entry of n events trims the stream to about 10000 / n entries: 1,000-job batches do not make it
    hold 10,000 entries of 1,000 events (a cap in entries would let 20 of them keep all 20,000 events)."""
    store = JobStore.from_settings(Settings(redis_url=private_redis.url, key_prefix="trim", queue="trim"))
    for _ in range(20):
        store.enqueue_many([Submission("echo", {}) for _ in range(1000)], owner="alpha")
    kept = sum(len(event_stream.job_events(f)) for _, f in store.redis.xrange(store.keys.event_stream))
    assert 10_000 <= kept <= 11_000, kept
    for _ in range(3):  # single events: the cap of 10,000 entries of before
        store.enqueue("echo", {}, owner="alpha")
    assert store.redis.xlen(store.keys.event_stream) == 13
