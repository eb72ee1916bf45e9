"""Open-loop load generator (aiohttp): submissions at a fixed rate, each accepted job polled until terminal.

Submissions are scheduled at ``start + i / rate`` whatever the server does (no coordinated omission: a
slow server does not slow the offered load; latency is measured from the scheduled time). Every
accepted job is then polled with ``GET /jobs/<id>`` every ``poll_interval`` seconds, as a client waiting
for its result would, until it is terminal.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from support.http_response import TERMINAL


@dataclass
class LoadResult:
    submitted: int = 0
    accepted: list[str] = field(default_factory=list)
    submit_latency: list[float] = field(default_factory=list)
    status_latency: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    terminal_at: dict[str, float] = field(default_factory=dict)
    duration: float = 0.0
    max_lag: float = 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(base_url: str, api_key: str, rate: float, seconds: float, body: dict[str, Any],
               poll_interval: float, drain: float) -> LoadResult:
    out = LoadResult()
    headers = {"Authorization": f"Bearer {api_key}"}
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=30)
    polls: list[asyncio.Task[None]] = []
    async with aiohttp.ClientSession(base_url, headers=headers, connector=connector, timeout=timeout) as session:

        async def poll(job_id: str) -> None:
            deadline = time.monotonic() + seconds + drain
            while time.monotonic() < deadline:
                await asyncio.sleep(poll_interval)
                t = time.monotonic()
                try:
                    async with session.get(f"/jobs/{job_id}") as resp:
                        data = await resp.json(content_type=None)
                        out.statuses[f"GET {resp.status}"] += 1
                        out.status_latency.append(time.monotonic() - t)
                        if resp.status != 200:
                            out.errors[f"GET {resp.status}"] += 1
                            continue
                except (TimeoutError, aiohttp.ClientError) as e:
                    out.errors[f"GET {type(e).__name__}"] += 1
                    continue
                if data["status"] in TERMINAL:
                    out.terminal_at[job_id] = time.monotonic()
                    return

        async def submit(scheduled: float) -> None:
            try:
                async with session.post("/jobs", json=body) as resp:
                    data = await resp.json(content_type=None)
                    out.submit_latency.append(time.monotonic() - scheduled)
                    out.statuses[f"POST {resp.status}"] += 1
                    if resp.status == 202:
                        out.accepted.append(data["id"])
                        polls.append(asyncio.create_task(poll(data["id"])))
                    else:
                        out.errors[f"POST {resp.status}"] += 1
            except (TimeoutError, aiohttp.ClientError) as e:
                out.errors[f"POST {type(e).__name__}"] += 1

        start = time.monotonic()
        submits = []
        i = 0
        while True:
            scheduled = start + i / rate
            if scheduled - start >= seconds:
                break
            now = time.monotonic()
            if scheduled > now:
                await asyncio.sleep(scheduled - now)
            out.max_lag = max(out.max_lag, time.monotonic() - scheduled)
            submits.append(asyncio.create_task(submit(scheduled)))
            out.submitted += 1
            i += 1
        await asyncio.gather(*submits)
        out.duration = time.monotonic() - start
        await asyncio.gather(*polls)
    return out


def run(base_url: str, api_key: str, *, rate: float, seconds: float, body: dict[str, Any],
        poll_interval: float = 0.5, drain: float = 60.0) -> LoadResult:
    """Offer ``rate`` submissions/s for ``seconds``; poll each accepted job until terminal (or ``drain`` s)."""
    return asyncio.run(_run(base_url, api_key, rate, seconds, body, poll_interval, drain))
