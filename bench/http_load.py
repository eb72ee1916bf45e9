"""HTTP load generator (run with .venv-bench): N concurrent keep-alive clients POSTing one body.

``python -m bench.http_load URL --concurrency 8 (--duration S | --count N) [--header K:V] [--body JSON]``
prints one JSON line: requests/s, status counts and latency percentiles. One process, asyncio + aiohttp,
so the client costs far less CPU per request than the gunicorn workers it measures (it still shares
the 2 cores with them; the same client measures the bare Flask app, so the ratio is fair).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

import aiohttp

from bench.common import emit, percentiles


async def _run(url: str, body: bytes, headers: dict[str, str], concurrency: int, duration: float,
               count: int) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    sent = 0
    deadline = 0.0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

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
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    statuses[resp.status] += 1
                latencies.append((time.perf_counter() - t) * 1000)

        async def warm() -> None:  # open the connections and warm the servers' code paths (not counted)
            async with session.post(url, data=body) as resp:
                await resp.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        start = time.perf_counter()
        deadline = start + duration
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    total = sum(statuses.values())
    return {"rps": total / elapsed, "requests": total, "elapsed": elapsed,
            "statuses": {str(k): v for k, v in statuses.items()}, "latency_ms": percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default='{"task": "echo", "params": {"n": 1}}')
    args = parser.parse_args()
    headers = {"Content-Type": "application/json"}
    for h in args.header:
        k, _, v = h.partition(":")
        headers[k.strip()] = v.strip()
    emit(asyncio.run(_run(args.url, args.body.encode(), headers, args.concurrency, args.duration, args.count)))


if __name__ == "__main__":
    main()
