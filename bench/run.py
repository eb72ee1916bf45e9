"""``make bench``: every measurement in one run on one private Redis, one table, docs/benchmarks.md.

Redis cost per job is measured a second time against another private Redis pinned to one CPU, with the
drivers and every process they start pinned to the others (``PINNED_SETUPS``, ``PINNED_PEERS``), and the
Redis instructions per job under callgrind (``bench.instructions``; skipped without valgrind).

``python -m bench [--smoke] [--output PATH]``. ``--smoke`` runs every part with tiny counts (about 1-2 min on an idle
host) to prove the bench still works; it writes to a temporary file unless ``--output`` is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BENCH_PY, OUR_PY, ROOT, PrivateRedis, run_driver, split_cpus
from bench.report import render_markdown, render_table
from bench.report_cost import RECOMMENDED, TARGET_SETUPS

PEERS = ["bare", "rq-simple", "rq-fork", "celery", "dramatiq-2x1", "dramatiq-default", "huey"]
BEST = RECOMMENDED  # our recommended 2-core setup: 2 worker processes x --concurrency 4 (README, Performance)
CURVE_PROCS = [1, 2, 4, 8, 16, 32]  # scale-out curve: worker processes (x 4 slots) against one Redis
CURVE_JOB_MS = [0, 10]


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "memory": f"{mem_gib:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis": redis_version.split(" sha=")[0],
        "commit": commit or "unknown",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def redis_benchmark(port: int, requests: int) -> dict[str, float]:
    """``redis-benchmark`` on the run's server: the physical limit of one Redis here (no pipelining)."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-n", str(requests), "-c", "50", "--csv",
         "-t", "set,get,lpush,rpop,hset"],
        capture_output=True, text=True, check=True,
    ).stdout
    rates: dict[str, float] = {}
    for line in out.splitlines()[1:]:
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2:
            rates[cells[0].split()[0]] = float(cells[1])
    return rates


#: worker setups (processes x slots) whose Redis cost is measured with Redis pinned to its own core: the
#: headline's and the short-job one (README, Performance: more slots per process, bigger claim batches)
PINNED_SETUPS = TARGET_SETUPS
#: producer processes of the ``producers`` part (lone submissions at once, shared and pinned)
PRODUCERS = 8
#: peers measured again with Redis pinned (their recommended setups; the variants of a worker flag left out)
PINNED_PEERS = ["bare", "rq-simple", "celery", "dramatiq-default", "huey"]


@dataclass
class Step:
    """One driver call: ``where`` it goes in the results, and which server it runs against — ``shared``
    (the run's Redis, every process on every core), ``pinned`` (a second Redis pinned to one CPU, the
    driver and everything it starts to the others) or ``own`` (the driver starts its own)."""

    where: tuple[str, ...]
    python: str
    module: str
    args: list[str]
    server: str = "shared"


def plan_steps(smoke: bool, jobs: int, rts: int, duration: float, pinned: bool) -> list[Step]:
    """Every part, in the order the full run takes them."""
    procs, conc = BEST
    plan = [
        Step(("ours",), OUR_PY, "bench.ours", ["drain", "--jobs", str(jobs), "--procs", str(procs),
                                              "--concurrency", str(conc), "--round-trips", str(rts)]),
        Step(("multi",), OUR_PY, "bench.ours", ["multi", "--jobs", str(jobs), "--procs", str(procs),
                                               "--concurrency", str(conc)]),
        Step(("http",), OUR_PY, "bench.ours", ["http", "--jobs", str(jobs), "--procs", str(procs),
                                              "--concurrency", str(conc), "--round-trips", str(rts),
                                              "--duration", str(duration)]),
    ]
    # the smoke run skips the variants that only change a worker flag (same driver code)
    for peer in PEERS if not smoke else [p for p in PEERS if p not in ("rq-fork", "dramatiq-2x1")]:
        n = jobs if peer != "rq-fork" else max(100, jobs // 5)  # ~150 jobs/s: keep the run short
        plan.append(Step(("peers", peer), BENCH_PY, "bench.peers", [peer, "--jobs", str(n), "--round-trips", str(rts)]))
    if pinned:
        # Redis cost with Redis on a core of its own (no round trips, memory and TTLs: the shared run has them)
        for p, c in PINNED_SETUPS if not smoke else PINNED_SETUPS[:1]:
            plan.append(Step(("pinned", "ours", f"{p}x{c}"), OUR_PY, "bench.ours",
                             ["drain", "--jobs", str(jobs), "--procs", str(p), "--concurrency", str(c),
                              "--round-trips", "0"], "pinned"))
        # lone submissions from several producer processes at once: Redis busier than one producer keeps it
        for where, server in ((("producers",), "shared"), (("pinned", "producers"), "pinned")):
            plan.append(Step(where, OUR_PY, "bench.ours", ["producers", "--jobs", str(jobs), "--producers",
                                                           str(PRODUCERS)], server))
        for peer in PINNED_PEERS if not smoke else PINNED_PEERS[:1]:
            plan.append(Step(("pinned", "peers", peer), BENCH_PY, "bench.peers",
                             [peer, "--jobs", str(min(jobs, 3000)), "--round-trips", "0"], "pinned"))
    setups = [(2, 1), (2, 2), (2, 4), (2, 8), (1, 4)] if not smoke else [(2, 2)]
    for i, (p, c) in enumerate(setups):
        plan.append(Step(("setups", str(i)), OUR_PY, "bench.ours", ["scale", "--jobs", str(jobs), "--procs", str(p),
                                                                   "--concurrency", str(c)]))
    for i, p in enumerate([1, 2, 4, 8] if not smoke else [1]):
        plan.append(Step(("scale_workers", str(i)), OUR_PY, "bench.ours", ["scale", "--jobs", str(jobs), "--procs",
                                                                          str(p), "--concurrency", "1"]))
    for i, n in enumerate([1_000, 10_000, 100_000] if not smoke else [100]):
        plan.append(Step(("scale_queue", str(i)), OUR_PY, "bench.ours", ["scale", "--jobs", str(n), "--procs",
                                                                        str(procs), "--concurrency", str(conc),
                                                                        *(["--keep"] if i else [])]))
    # the smoke run: one point per job length (2 processes for one of them), to keep it short
    for job_ms in CURVE_JOB_MS:
        for p in CURVE_PROCS if not smoke else [2 if not job_ms else 1]:
            n = 100 if smoke else (6000 if not job_ms else min(6000, 400 * p + 600))
            plan.append(Step(("curve", f"{job_ms}-{p}"), OUR_PY, "bench.ours",
                             ["curve", "--jobs", str(n), "--procs", str(p), "--job-ms", str(job_ms)]))
    plan.append(Step(("expiry",), OUR_PY, "bench.ours", ["expiry"]))
    plan.append(Step(("tracing",), OUR_PY, "bench.ours", ["tracing", "--jobs", str(jobs), "--procs", str(procs),
                                                         "--concurrency", str(conc)]))
    # Redis instructions per job (callgrind, ~45 s; skipped without valgrind): last, on its own server
    plan.append(Step(("instructions",), OUR_PY, "bench.instructions",
                     ["--jobs", "5" if smoke else "300", "--slots", "4" if smoke else "1,4,8"], "own"))
    return plan


def run(smoke: bool) -> dict[str, Any]:
    """Every part, in order (one at a time, so they do not disturb each other's figures).

    The smoke run gives each part its own logical database and runs them all at once: it only proves
    that every driver still works, in about 1-2 min on an idle host.
    """
    jobs = 300 if smoke else 10_000
    rts = 20 if smoke else 300
    duration = 0.5 if smoke else 6.0  # HTTP: per server and client count, over 12 alternating rounds (smoke: 4)
    results: dict[str, Any] = {"machine": machine(), "smoke": smoke, "jobs": jobs, "round_trips": rts}
    split = split_cpus()
    plan = plan_steps(smoke, jobs, rts, duration, pinned=split is not None)
    server = PrivateRedis()
    servers = {"shared": server}
    cpus: dict[str, set[int] | None] = {"shared": None, "own": None}
    if split is not None:
        servers["pinned"] = PrivateRedis(split[0])
        cpus["pinned"] = split[1]
        results["pinned_cpus"] = {"redis": sorted(split[0]), "others": sorted(split[1])}

    took: dict[str, float] = {}

    def call(step: Step, db: int) -> dict[str, object]:
        args = step.args if step.server == "own" else [*step.args[:1], "--redis-url",
                                                       servers[step.server].db_url(db), *step.args[1:]]
        t = time.monotonic()
        out = run_driver(step.python, step.module, args, cpus=cpus[step.server])
        took[" ".join(step.where)] = round(time.monotonic() - t, 1)
        return out

    try:
        if shutil.which("redis-benchmark"):
            results["redis_benchmark"] = redis_benchmark(server.port, 20_000 if smoke else 200_000)
        if smoke:
            with ThreadPoolExecutor(len(plan)) as pool:
                futures = [pool.submit(call, step, i + 1) for i, step in enumerate(plan)]
                outputs = [f.result() for f in futures]
        else:
            outputs = []
            for step in plan:
                print(f"bench: {' '.join(step.where)} ...", file=sys.stderr, flush=True)
                outputs.append(call(step, 0))
                print(f"bench: {' '.join(step.where)} done in {took[' '.join(step.where)]:.1f}s", file=sys.stderr,
                      flush=True)
    finally:
        for s in servers.values():
            s.stop()
    results["elapsed_by_part_s"] = took  # the smoke run's parts overlap: its longest part is its wall time
    for step, out in zip(plan, outputs, strict=True):
        where = step.where
        if where[0] in ("setups", "scale_workers", "scale_queue", "curve"):
            results.setdefault(where[0], []).append(out)
            continue
        node = results
        for key in where[:-1]:
            node = node.setdefault(key, {})
        node[where[-1]] = out
    return results


PLOT = ROOT / "docs" / "img" / "scale-out.png"


def plot(results: dict[str, Any], out: Path) -> None:
    """The scale-out PNG, drawn by ``bench.plot`` in .venv-bench (matplotlib is a bench-only tool)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(results, f)
        f.flush()
        subprocess.run([BENCH_PY, "-m", "bench.plot", f.name, str(out)], cwd=ROOT, check=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    print(f"bench: scale-out plot written to {out}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts, ~1-2 min: proves the bench works")
    parser.add_argument("--output", help="markdown report (default docs/benchmarks.md; a temp file with --smoke)")
    parser.add_argument("--json", help="raw results (default bench/results/latest.json; none with --smoke)")
    parser.add_argument("--render", metavar="JSON", help="only re-render the report from a --json file")
    args = parser.parse_args()
    if args.render:  # e.g. after editing bench/analysis.md: same figures, new text
        results = json.loads(Path(args.render).read_text())
        output = args.output or str(ROOT / "docs" / "benchmarks.md")
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(render_markdown(results))
        if results.get("curve"):
            plot(results, PLOT)
        print(render_table(results))
        return
    if not Path(BENCH_PY).exists():
        sys.exit("bench: .venv-bench is missing; run `make bench` (it installs bench/requirements.txt)")
    started = time.monotonic()
    results = run(args.smoke)
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    results["machine"]["load_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    if args.smoke:
        slowest = sorted(results["elapsed_by_part_s"].items(), key=lambda kv: -kv[1])[:5]
        print("bench: slowest parts " + ", ".join(f"{k} {v} s" for k, v in slowest), file=sys.stderr)
        print("SMOKE RUN (tiny counts, every part at once): the figures below mean nothing")
    print(render_table(results))
    output = args.output or (os.path.join(tempfile.gettempdir(), "jobs-bench-smoke.md") if args.smoke
                             else str(ROOT / "docs" / "benchmarks.md"))
    json_out = args.json or (None if args.smoke else str(ROOT / "bench" / "results" / "latest.json"))
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=1))
    plot(results, Path(tempfile.gettempdir()) / "jobs-bench-smoke.png" if args.smoke else PLOT)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(render_markdown(results))
    print(f"bench: report written to {output} ({results['elapsed_s']} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
