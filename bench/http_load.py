"""HTTP load generator (run with .venv-bench): N concurrent keep-alive clients POSTing one body.

``python -m bench.http_load URL --concurrency 8 (--duration S | --count N) [--header K:V] [--body JSON]``
prints one JSON line: requests/s, status counts and latency percentiles. One process, asyncio + aiohttp,
so the client costs far less CPU per request than the gunicorn workers it measures (it still shares
the 2 cores with them; the same client measures the bare Flask app, so the ratio is fair).

``... --versus URL2 --rounds R`` compares two servers from one process: an uncounted warm-up on each, then
``R`` rounds, each one segment of ``duration / R`` seconds on either server, the order flipped every round
(A B, B A, ...) so that a drift of the machine's other load falls on both alike. Each round gives one
paired ratio (A's requests/s ÷ B's); the JSON carries both sides' medians, every round, the paired ratios,
and the CPU that the load generator itself and each server's processes (``--pids``: the gunicorn masters,
their workers found under them) used per request: on 2 shared cores a side's req/s is bounded by what the
client and the other processes leave it, and these say how much that was.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import statistics
import time
from collections import Counter
from typing import Any

import aiohttp

from bench.common import emit, percentiles

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_self() -> float:
    """CPU seconds (user + system) this process has used."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (every core; /proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK  # user nice system idle iowait irq softirq steal


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _cpu_of(pids: list[int]) -> float:
    """CPU seconds (user + system, every thread) the processes ``pids`` have used."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / TICK


class Target:
    """One server under load: its kept-alive session and what its segments measured."""

    def __init__(self, session: aiohttp.ClientSession, url: str, body: bytes, concurrency: int,
                 pids: list[int]) -> None:
        self.session, self.url, self.body, self.concurrency, self.pids = session, url, body, concurrency, pids
        self.statuses: Counter[int] = Counter()
        self.latencies: list[float] = []
        self.rounds: list[float] = []  # requests/s of each counted segment
        self.elapsed = self.client_cpu = self.server_cpu = 0.0

    async def warm(self) -> None:
        """Open the connections and warm the server's code paths (not counted)."""
        async def one() -> None:
            async with self.session.post(self.url, data=self.body) as resp:
                await resp.read()

        await asyncio.gather(*(one() for _ in range(self.concurrency)))

    async def segment(self, duration: float, count: int = 0, counted: bool = True) -> None:
        """``concurrency`` clients for ``duration`` seconds (or ``count`` requests in all)."""
        statuses: Counter[int] = Counter()
        latencies: list[float] = []
        sent = 0
        deadline = 0.0

        async def client() -> None:
            nonlocal sent
            while True:
                if count:
                    if sent >= count:
                        return
                    sent += 1
                elif time.perf_counter() >= deadline:
                    return
                t = time.perf_counter()
                async with self.session.post(self.url, data=self.body) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                latencies.append((time.perf_counter() - t) * 1000)

        cpu0, server0 = _cpu_self(), _cpu_of(self.pids)
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(*(client() for _ in range(self.concurrency)))
        elapsed = time.perf_counter() - start
        if not counted:
            return
        self.client_cpu += _cpu_self() - cpu0
        self.server_cpu += _cpu_of(self.pids) - server0
        self.statuses += statuses
        self.latencies += latencies
        self.elapsed += elapsed
        self.rounds.append(sum(statuses.values()) / elapsed)

    def result(self) -> dict[str, Any]:
        total = sum(self.statuses.values())
        out: dict[str, Any] = {"rps": total / self.elapsed, "requests": total, "elapsed": self.elapsed,
                               "statuses": {str(k): v for k, v in self.statuses.items()},
                               "latency_ms": percentiles(self.latencies),
                               "client_cpu_us_per_request": self.client_cpu / total * 1e6 if total else None}
        if self.pids:
            out["server_cpu_us_per_request"] = self.server_cpu / total * 1e6 if total else None
        if len(self.rounds) > 1:  # the median round stands for the side; every round is kept
            out["rps"] = statistics.median(self.rounds)
            out["rps_runs"] = [round(r) for r in self.rounds]
        return out


def _session(concurrency: int, headers: dict[str, str]) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency, force_close=False),
                                 headers=headers)


async def _run(url: str, body: bytes, headers: dict[str, str], concurrency: int, duration: float,
               count: int, pids: list[int]) -> dict[str, Any]:
    async with _session(concurrency, headers) as session:
        target = Target(session, url, body, concurrency, [q for p in pids for q in _tree(p)])
        await target.warm()
        await target.segment(duration, count)
    return target.result()


def spread(ratios: list[float]) -> dict[str, float]:
    """Median, quartiles and range of paired ratios, taken on their logarithms so that A ÷ B and B ÷ A
    give reciprocal figures also for an even number of rounds (the middle two averaged geometrically)."""
    logs = [math.log(r) for r in ratios]
    q = statistics.quantiles(logs, n=4, method="inclusive") if len(logs) > 1 else [logs[0]] * 3
    return {"median": math.exp(statistics.median(logs)), "q1": math.exp(q[0]), "q3": math.exp(q[2]),
            "min": min(ratios), "max": max(ratios)}


async def _versus(urls: tuple[str, str], body: bytes, headers: dict[str, str], concurrency: int, duration: float,
                  rounds: int, warmup: float, pids: tuple[list[int], list[int]]) -> dict[str, Any]:
    async with _session(concurrency, headers) as sa, _session(concurrency, headers) as sb:
        a = Target(sa, urls[0], body, concurrency, [q for p in pids[0] for q in _tree(p)])
        b = Target(sb, urls[1], body, concurrency, [q for p in pids[1] for q in _tree(p)])
        for t in (a, b):
            await t.warm()
            await t.segment(warmup, counted=False)
        load = os.getloadavg()[0]
        busy0, start = _busy_cpu(), time.perf_counter()
        for i in range(rounds):
            for t in ((a, b) if i % 2 == 0 else (b, a)):
                await t.segment(duration / rounds)
        # what processes other than the two servers and this generator ran on the cores meanwhile; the
        # load average cannot say it, as it counts the measured servers and this process too
        others = _busy_cpu() - busy0 - a.client_cpu - a.server_cpu - b.client_cpu - b.server_cpu
        others_share = max(0.0, others) / ((time.perf_counter() - start) * (os.cpu_count() or 1))
    ratios = [x / y for x, y in zip(a.rounds, b.rounds, strict=True)]
    return {"a": a.result(), "b": b.result(), "rounds": rounds, "segment_s": duration / rounds, "warmup_s": warmup,
            "ratio": {**spread(ratios), "runs": [round(r, 3) for r in ratios]},
            # the machine's 1-minute load average before and after the rounds: with other work on the cores,
            # Redis (ours only) gets a scheduler share of its own and the ratio reads high (bench/analysis.md)
            "load": [round(load, 2), round(os.getloadavg()[0], 2)], "others_cpu_share": round(others_share, 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of counted load (per server)")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default='{"task": "echo", "params": {"n": 1}}')
    parser.add_argument("--pids", default="", help="comma-separated server pids (descendants included)")
    parser.add_argument("--versus", help="a second server's URL, measured in alternating rounds")
    parser.add_argument("--versus-pids", default="")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--warmup", type=float, default=0.5, help="uncounted seconds per server first")
    args = parser.parse_args()
    headers = {"Content-Type": "application/json"}
    for h in args.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()

    def pids(s: str) -> list[int]:
        return [int(p) for p in s.split(",") if p]

    if args.versus:
        emit(asyncio.run(_versus((args.url, args.versus), args.body.encode(), headers, args.concurrency,
                                 args.duration, args.rounds, args.warmup, (pids(args.pids), pids(args.versus_pids)))))
    else:
        emit(asyncio.run(_run(args.url, args.body.encode(), headers, args.concurrency, args.duration, args.count,
                              pids(args.pids))))


if __name__ == "__main__":
    main()
