"""The floor: a bare hotqueue-style loop (BLPOP a JSON job, run it, SET the result). No leases, no
in-flight tracking, no retries, no child process: a job taken by a worker that dies is lost."""

from __future__ import annotations

import json
import os
import sys

import redis

QUEUE = "hotqueue:bare"


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    while True:
        item = client.blpop([QUEUE], timeout=1)
        if item is None:
            continue
        job = json.loads(item[1])
        result = job["params"]  # the no-op task
        client.set(f"bare:result:{job['id']}", json.dumps(result), ex=3600)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
