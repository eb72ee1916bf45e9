"""Numbers the hot scripts pass to Redis as strings formatted once per call (profile 18): the records,
scores and counters hold the same integers as when Redis formatted the Lua numbers itself."""

from __future__ import annotations

import re
from importlib import resources

from jobs_core.delivery import Finish
from jobs_core.model import Result
from jobs_core.store import JobStore

NOW_LUA = (resources.files("jobs_core") / "lua" / "includes" / "now.lua").read_text(encoding="utf-8")
DIGITS = re.compile(rb"^\d+$")


def test_int_arg_formats_integers_and_keeps_any_other_number_exact(store: JobStore) -> None:
    probe = NOW_LUA + """
local out = {}
for _, n in ipairs({0, -1, 7, 1764471234567, 2^53 - 1, 1.5, 2^53 + 2}) do
  local a = int_arg(n)
  out[#out + 1] = type(a) .. ':' .. (type(a) == 'string' and a or string.format('%.17g', a))
end
local ms = now_ms()
out[#out + 1] = now_arg(ms) == string.format('%d', ms) and 'now ok' or 'now bad'
out[#out + 1] = now_arg(ms + 5) == string.format('%d', ms + 5) and 'other ok' or 'other bad'
return out
"""
    got = [v.decode() for v in store.redis.eval(probe, 0)]
    assert got == ["string:0", "string:-1", "string:7", "string:1764471234567", "string:9007199254740991",
                   "number:1.5", "number:9007199254740994", "now ok", "other ok"]


def test_records_scores_and_counters_hold_integers(store: JobStore) -> None:
    job, _ = store.enqueue("t", {"x": 1}, priority=7, delay=2.5)
    plain, _ = store.enqueue("t", {"x": 2})
    r, k = store.redis, store.keys
    rec = r.hgetall(k.job(job.id))
    assert DIGITS.match(rec[b"created_at"]) and DIGITS.match(rec[b"seq"])
    assert rec[b"attempts"] == b"0" and rec[b"priority"] == b"7"
    assert int(rec[b"run_at"]) == int(rec[b"created_at"]) + 2500
    assert r.zscore(k.delayed, job.id) == float(int(rec[b"run_at"]))
    assert r.zscore(k.index, job.id) == float(int(rec[b"seq"]))
    seq_plain = int(r.hget(k.job(plain.id), "seq"))
    assert seq_plain == int(rec[b"seq"]) + 1 and r.zscore(k.index, plain.id) == float(seq_plain)
    assert int(r.hget(k.pending, "default")) == 2

    _, claimed = store.finish_and_claim("w1", [], 4)
    assert [c.id for c in claimed] == [plain.id] and claimed[0].attempt == 1
    running = r.hgetall(k.job(plain.id))
    assert running[b"attempts"] == b"1" and DIGITS.match(running[b"started_at"])
    lease = r.zscore(k.leases, plain.id)
    assert lease is not None and lease == int(lease) and lease > int(running[b"started_at"])
    assert int(r.hget(k.pending, "default")) == 1

    ok = Result(data=b'"ok"', media_type="application/json")
    statuses, _ = store.finish_and_claim("w1", [Finish(plain.id, 1, "succeeded", result=ok)], 0)
    assert statuses == ["succeeded"]
    done = r.hgetall(k.job(plain.id))
    assert done[b"progress"] == b"1" and DIGITS.match(done[b"finished_at"])
    assert int(done[b"finished_at"]) >= int(done[b"started_at"])
    assert r.zscore(k.leases, plain.id) is None
