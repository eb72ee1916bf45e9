"""Turn one run's results into the console table and docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

PEER_LABELS = {
    "bare": "bare hotqueue-style BLPOP loop, 2 processes (no guarantees)",
    "rq-simple": "RQ SimpleWorker, 2 processes",
    "rq-fork": "RQ default forking Worker, 2 processes",
    "celery": "Celery prefork -c 2",
    "dramatiq-2x1": "Dramatiq 2 processes x 1 thread",
    "dramatiq-default": "Dramatiq default (2 processes x 8 threads)",
    "huey": "Huey 2 process workers",
}


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value != value:
        return "-"
    return f"{value:,.{digits}f}"


def _rt(d: dict[str, float] | None) -> str:
    if not d:
        return "-"
    return f"{d['p50']:.2f} / {d['p90']:.2f} / {d['p99']:.2f}"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def drain_rows(res: dict[str, Any]) -> list[list[str]]:
    ours, http, peers = res["ours"], res["http"], res["peers"]
    bare = peers.get("bare", {}).get("drain_rate")
    rows = [[
        f"**Jobs API** ({ours['procs']} processes x --concurrency {ours['concurrency']}), library enqueue",
        _f(ours["enqueue_rate"]), f"**{_f(ours['drain_rate'])}**",
        _f(ours["drain_rate"] / bare * 100) + "%" if bare else "-",
        _rt(ours.get("round_trip_ms")), _f(ours.get("rss_mb")),
    ]]
    multi = res.get("multi")
    if multi:
        rows.append([
            f"**Jobs API**, {multi['queues']} queues x {multi['priorities']} priorities in use (workers on all "
            "three, strict order)",
            "-", _f(multi["drain_rate"]), _f(multi["drain_rate"] / bare * 100) + "%" if bare else "-",
            f"{_f(multi['round_trips'], 2)} Redis round trips/job", _f(multi.get("rss_mb")),
        ])
    rows += [[
        "**Jobs API**, enqueue through `POST /jobs` (32 clients)",
        _f(http["http_enqueue"]["rps"]), _f(http.get("http_drain_rate")),
        _f(http["http_drain_rate"] / bare * 100) + "%" if bare and http.get("http_drain_rate") else "-",
        _rt(http.get("http_round_trip_ms")) + " (HTTP)", "-",
    ]]
    for name, p in peers.items():
        rows.append([
            PEER_LABELS.get(name, name) + (f" ({p['jobs']} jobs)" if p["jobs"] != res["jobs"] else ""),
            _f(p["enqueue_rate"]), _f(p["drain_rate"]),
            _f(p["drain_rate"] / bare * 100) + "%" if bare else "-",
            _rt(p.get("round_trip_ms")), _f(p.get("rss_mb")),
        ])
    return rows


def targets(res: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for every target of issue 6."""
    ours, http, peers = res["ours"], res["http"], res["peers"]
    rate = ours["drain_rate"]
    out: list[tuple[str, str, bool]] = []
    fastest = max((n for n in ("dramatiq-2x1", "dramatiq-default", "huey") if n in peers),
                  key=lambda n: peers[n]["drain_rate"], default=None)
    if fastest:
        f = peers[fastest]["drain_rate"]
        out.append((f"drain >= fastest peer ({PEER_LABELS[fastest]})", f"{rate:,.0f} vs {f:,.0f} jobs/s "
                    f"({rate / f:.2f}x)", rate >= f))
    if "bare" in peers:
        b = peers["bare"]["drain_rate"]
        out.append(("drain >= 50% of the bare BLPOP loop", f"{rate / b * 100:.0f}% ({rate:,.0f} vs {b:,.0f})",
                    rate >= 0.5 * b))
    if "rq-simple" in peers:
        q = peers["rq-simple"]["drain_rate"]
        out.append(("drain >= 3x RQ SimpleWorker", f"{rate / q:.1f}x ({rate:,.0f} vs {q:,.0f})", rate >= 3 * q))
    rt = ours.get("round_trip_ms")
    if rt:
        out.append(("round trip p50 <= 2 ms (library: submit, long-poll, result)", f"{rt['p50']:.2f} ms",
                    rt["p50"] <= 2.0))
        out.append(("round trip p99 <= 10 ms", f"{rt['p99']:.2f} ms", rt["p99"] <= 10.0))
    for c in (8, 32):
        a, h = http.get(f"api_c{c}"), http.get(f"hello_c{c}")
        if a and h:
            frac = a["rps"] / h["rps"]
            out.append((f"HTTP submit >= 50% of bare gunicorn + Flask ({c} clients)",
                        f"{frac * 100:.0f}% ({a['rps']:,.0f} vs {h['rps']:,.0f} req/s)", frac >= 0.5))
    return out


def render_table(res: dict[str, Any]) -> str:
    """Plain-text summary for the terminal."""
    lines = [f"{'system':<72} {'enqueue/s':>10} {'drain/s':>9} {'vs bare':>8}  round trip p50/p90/p99 ms"]
    for row in drain_rows(res):
        lines.append(f"{row[0].replace('**', ''):<72} {row[1]:>10} {row[2].replace('**', ''):>9} {row[3]:>8}  {row[4]}")
    lines.append("")
    for target, measured, ok in targets(res):
        lines.append(f"[{'met' if ok else 'MISSED'}] {target}: {measured}")
    return "\n".join(lines)


def render_markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    ours, http = res["ours"], res["http"]
    rb = res.get("redis_benchmark", {})
    parts = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/`); rerun it to refresh this page. The analysis at the end is "
        "kept in `bench/analysis.md`." + (" **SMOKE RUN: tiny counts, figures meaningless.**" if res["smoke"] else ""),
        "",
        "## Machine and method",
        "",
        f"- {m['cpu']}, {m['memory']} RAM, {m['os']}, Python {m['python']}, {m['redis']}; commit {m['commit']}, "
        f"{m['date']}; load average at start {m['load']}"
        + (f", at end {m['load_end']}" if m.get("load_end") else "")
        + " (other work on the machine adds noise; all "
        "ratios below come from this one run).",
        "- One private `redis-server` (no persistence) on a free loopback port, shared by every system in the "
        "run and flushed between them. Same no-op task everywhere (returns its params; our `echo`), results "
        "stored in that Redis by every system.",
        f"- Drain: {res['jobs']:,} jobs enqueued first (sequential single-job enqueue calls, each system's own "
        "API), then the workers start. The clock starts when the queue has shrunk by a 2% warm-up (start-up "
        "is not counted) and stops when every result is stored: rate = jobs left at start / elapsed.",
        f"- Round trip: {res['round_trips']} sequential submit -> result on idle workers, each system's own "
        "blocking wait (ours: `JobStore.enqueue` + `wait` (pub/sub long-poll) + `get_result`; over HTTP: "
        "`POST /jobs`, `GET /jobs/<id>?wait=10`, `GET /jobs/<id>/result` on one keep-alive connection).",
        "- HTTP: `jobs-api` with its shipped gunicorn settings (2 gthread workers x 8 threads, JSON access "
        "log, API keys on); the bare app is `bench/hello_app.py` under the very same settings file. Load "
        "from one asyncio/aiohttp process (`bench/http_load.py`) on the same 2 cores.",
        "- Peers run from `.venv-bench` (`bench/requirements.txt`, pinned), ours from the project `.venv`.",
        "",
        "Commands: `make bench` (= `.venv/bin/python -m bench`, after installing `.venv-bench`); "
        "`make bench-smoke` (= `python -m bench --smoke`, ~30 s). Single parts: "
        "`python -m bench.ours {drain,http,scale,multi,expiry,tracing} --redis-url URL ...`, "
        "`.venv-bench/bin/python -m bench.peers SYSTEM --redis-url URL --jobs N`. The figures on this page are "
        "in `bench/results/latest.json` (`python -m bench --json FILE` writes them; `--render FILE` rebuilds "
        "this page from them).",
        "",
        "## Targets (issue 6)",
        "",
        _md_table(["target", "measured", "met"],
                  [[t, v, "yes" if ok else "**no**"] for t, v, ok in targets(res)]),
        "",
        "## Drain throughput and round trip",
        "",
        _md_table(["system", "enqueue jobs/s", "drain jobs/s", "vs bare loop", "round trip p50 / p90 / p99 ms",
                   "worker RSS MiB"], drain_rows(res)),
        "",
        "## HTTP submit (`POST /jobs`) vs bare gunicorn + Flask",
        "",
        "Medians of three alternating runs per row (all runs in brackets).",
        "",
        _md_table(["clients", "POST /jobs req/s", "p50 / p99 ms", "bare Flask req/s", "p50 / p99 ms", "ours / bare"],
                  [[str(c), _f(http[f"api_c{c}"]["rps"]) + f" {http[f'api_c{c}'].get('rps_runs', '')}",
                    f"{http[f'api_c{c}']['latency_ms']['p50']:.1f} / {http[f'api_c{c}']['latency_ms']['p99']:.1f}",
                    _f(http[f"hello_c{c}"]["rps"]) + f" {http[f'hello_c{c}'].get('rps_runs', '')}",
                    f"{http[f'hello_c{c}']['latency_ms']['p50']:.1f} / {http[f'hello_c{c}']['latency_ms']['p99']:.1f}",
                    f"{http[f'api_c{c}']['rps'] / http[f'hello_c{c}']['rps'] * 100:.0f}%"]
                   for c in (8, 32) if f"api_c{c}" in http]),
        "",
        "## Redis cost per job and the ceiling it sets",
        "",
    ]
    enq, wk = ours["enqueue_cost"], ours["worker_cost"]
    rts = enq["round_trips"] + wk["round_trips"]
    cpu = enq["redis_cpu_us"] + wk["redis_cpu_us"]
    ops = max(rb.values()) if rb else None
    parts += [
        _md_table(["", "enqueue", "worker (claim, finish, heartbeats, reaper)", "life cycle"], [
            ["round trips (client reads seen by Redis)", _f(enq["round_trips"], 2), _f(wk["round_trips"], 2),
             _f(rts, 2)],
            ["commands (incl. those inside Lua scripts)", _f(enq["commands"], 1), _f(wk["commands"], 1),
             _f(enq["commands"] + wk["commands"], 1)],
            ["Redis CPU per job (µs)", _f(enq["redis_cpu_us"], 1), _f(wk["redis_cpu_us"], 1), _f(cpu, 1)],
        ]),
        "",
        "`redis-benchmark` on the same server (50 clients, no pipelining): "
        + ", ".join(f"{k} {_f(v)}/s" for k, v in rb.items()) + ".",
        "",
        f"Ceilings: {_f(ops)} ops/s ÷ {rts:.2f} round trips per job = **{_f(ops / rts if ops and rts else None)} "
        f"jobs/s**; by Redis CPU, 1 s ÷ {cpu:.0f} µs = **{_f(1e6 / cpu if cpu else None)} jobs/s** with a whole "
        "core for Redis (here Redis shares 2 cores with the workers and the load).",
        "",
        "Commands per job, worker side (`INFO commandstats`): "
        + ", ".join(f"{k} {v}" for k, v in list(wk["by_command"].items())[:16]) + ".",
        "",
        "## Scaling",
        "",
        "Setups on 2 cores (processes x slots per process):",
        "",
        _md_table(["processes x slots", "drain jobs/s", "round trips/job", "Redis CPU µs/job", "worker RSS MiB"],
                  [[f"{s['procs']} x {s['concurrency']}", _f(s["drain_rate"]), _f(s["round_trips"], 2),
                    _f(s["redis_cpu_us"], 1), _f(s["rss_mb"])] for s in res["setups"]]),
        "",
        "Worker processes (1 slot each):",
        "",
        _md_table(["worker processes", "drain jobs/s", "round trips/job", "Redis CPU µs/job", "worker RSS MiB"],
                  [[str(s["procs"]), _f(s["drain_rate"]), _f(s["round_trips"], 2), _f(s["redis_cpu_us"], 1),
                    _f(s["rss_mb"])] for s in res["scale_workers"]]),
        "",
        "Jobs queued (drained by the recommended setup, one run after the other without flushing, so each "
        "run also starts with the earlier runs' finished jobs in Redis; the per-job cost must stay flat):",
        "",
        _md_table(["jobs queued", "finished jobs already stored", "enqueue jobs/s", "drain jobs/s",
                   "round trips/job", "commands/job", "Redis CPU µs/job"],
                  [[_f(s["jobs"]), _f(s.get("finished_before")), _f(s["enqueue_rate"]), _f(s["drain_rate"]),
                    _f(s["round_trips"], 2), _f(s["commands"], 1), _f(s["redis_cpu_us"], 1)]
                   for s in res["scale_queue"]]),
        "",
        "## Memory and expiry",
        "",
    ]
    e = res["expiry"]
    mu, ttl = ours["memory_usage_bytes"], ours["ttl_seconds"]
    parts += [
        f"- Redis memory per finished job: {_f(enq['memory_bytes'] + wk['memory_bytes'])} bytes (used_memory "
        f"growth ÷ jobs, indexes included); `MEMORY USAGE`: job hash {mu['job_hash']} B, result {mu['result']} B.",
        f"- TTLs after finish: job record {ttl['job_hash']} s (`JOBS_RECORD_TTL_SECONDS`), result {ttl['result']} s "
        "(`JOBS_RESULT_TTL_SECONDS`).",
        f"- Expiry shown with TTLs of 1 s / 2 s: {e['keys_after_finish']} record+result keys right after the "
        f"drain of 200 jobs, {e['keys_after_ttl']} left 2.5 s later; the index pruning (run by the reaper) "
        f"then dropped {e['index_pruned']} of {e['index_entries']} index entries ({e['index_left']} left).",
        f"- Worker RSS (process + fork server + slot children): {_f(ours['rss_mb'])} MiB for "
        f"{ours['procs']} x {ours['concurrency']} slots.",
        "",
    ]
    tr = res.get("tracing")
    if tr:
        on_share = None if tr["overhead_pct"] is None else 100 - tr["overhead_pct"]
        parts += [
            "## Tracing overhead",
            "",
            f"The drain of {tr['jobs']:,} jobs on {tr['procs']} x {tr['concurrency']} slots, tracing off then on "
            "(OpenTelemetry SDK, every attempt's spans exported over OTLP/HTTP to a loopback sink): "
            f"{_f(tr['off_rate'])} vs {_f(tr['on_rate'])} jobs/s (on = {_f(on_share, 1)}% of off), "
            f"{_f(tr['off_round_trips'], 2)} vs {_f(tr['on_round_trips'], 2)} Redis round trips per job. "
            "With tracing off the code path is the one measured everywhere above.",
            "",
        ]
    parts += [
        f"Whole run: {res.get('elapsed_s', '?')} s.",
        "",
    ]
    analysis = HERE / "analysis.md"
    if analysis.exists():
        parts += [analysis.read_text().rstrip(), ""]
    return "\n".join(parts)
