"""``python -m bench.console``: how long the console's pages take to render with many jobs stored.

Stores ``--jobs`` (default 100,000) jobs of two tenants in a private namespace of a Redis (``REDIS_URL``,
default the local one; the namespace is deleted afterwards), a few of them failed and a few carrying a
searchable param, then renders each console page in process (the Flask app with the real store, no HTTP
server) ``--runs`` times and prints the median and the worst, as an admin (every tenant: the largest
index). It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import redis
from jobs_api.app import create_app
from jobs_api.console.session import ConsoleConfig
from jobs_core.config import Settings
from jobs_core.model import JobError, Submission, TaskInfo
from jobs_core.store import JobStore

TASKS = [TaskInfo("echo", "Return the params.", {"type": "object"}),
         TaskInfo("resize", "Resize an image.", {"type": "object", "properties": {"user": {"type": "string"}}})]


def fill(store: JobStore, total: int) -> tuple[str, str]:
    """``total`` jobs (batches of 1,000, two tenants); every 1,000th fails, every 5,000th has user=needle."""
    failed_one = ""
    for start in range(0, total, 1000):
        n = min(1000, total - start)
        items = [Submission("resize" if (start + i) % 5000 == 0 else "echo",
                            {"user": "needle" if (start + i) % 5000 == 0 else f"u{start + i}", "n": start + i})
                 for i in range(n)]
        jobs, _ = store.enqueue_many(items, owner="alpha" if start % 2000 == 0 else "beta")
        claimed = store.claim("bench-worker", 1)
        for c in claimed:
            store.finish("bench-worker", c.id, c.attempt, "failed", error=JobError("RuntimeError", "boom", "tb"))
            failed_one = c.id
    return jobs[-1].id, failed_one


def measure(total: int, runs: int) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    ns = f"bc{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=url, key_prefix=ns, queue=ns)
    store = JobStore.from_settings(settings)
    try:
        store.publish_tasks(TASKS)
        t0 = time.perf_counter()
        last_id, failed_id = fill(store, total)
        print(f"stored {total:,} jobs in {time.perf_counter() - t0:.1f} s (namespace {ns})")
        app = create_app({"JOBS_SETTINGS": settings, "JOBS_STORE": store, "JOBS_CONSOLE": ConsoleConfig()})
        client = app.test_client()
        pages = {
            "overview": "/ui/",
            "jobs, first page": "/ui/jobs",
            "jobs, status=failed (sparse: scan budget)": "/ui/jobs?status=failed",
            "jobs, params user=needle": "/ui/jobs?param=user&value=needle",
            "jobs, tenant=alpha task=resize": "/ui/jobs?tenant=alpha&task=resize",
            "job detail": f"/ui/jobs/{last_id}",
            "job detail (failed)": f"/ui/jobs/{failed_id}",
            "queues": "/ui/queues",
            "workers": "/ui/workers",
            "tasks": "/ui/tasks",
        }
        print(f"\n| page ({total:,} jobs stored) | median ms | max ms |\n| --- | ---: | ---: |")
        for name, path in pages.items():
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                resp = client.get(path, headers={"Accept": "text/html"})
                times.append((time.perf_counter() - start) * 1000)
                assert resp.status_code == 200, (path, resp.status_code)
            print(f"| {name} | {statistics.median(times):.1f} | {max(times):.1f} |")
    finally:
        client_ = redis.Redis.from_url(url)
        keys = [*client_.scan_iter(f"{ns}:*", count=5000)]
        keys += [k.decode() for k in client_.scan_iter(f"hotqueue:{ns}*", count=1000)]
        for i in range(0, len(keys), 1000):
            client_.delete(*keys[i : i + 1000])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    measure(args.jobs, args.runs)


if __name__ == "__main__":
    main()
