"""A/B of two (or more) copies of the Lua scripts in Redis instructions (callgrind; load does not change them).

Not part of ``make bench`` nor of CI (needs valgrind). Export the scripts of a base commit, then compare::

    mkdir /tmp/base && git archive <commit> libs/jobs_core/src/jobs_core/lua | tar -x -C /tmp/base
    PYTHONPATH=. .venv/bin/python -m bench.lua_ab /tmp/base/libs/jobs_core/src/jobs_core/lua \\
        libs/jobs_core/src/jobs_core/lua --jobs 300 --rounds 4

On one private redis-server under callgrind (``bench.profile_redis``), alternating the directories round
by round, it loads ``enqueue`` and ``finish_claim`` from each and prints Redis instructions per job (the
cron left out) for: ``jobs`` lone submissions (``JobStore.enqueue`` one by one; again with the API's
default caps), 1,000 jobs as
``enqueue_many`` of 100, and the worker's finish + claim of all of them (4 slots, one process).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis
from jobs_core import scripts
from jobs_core.store import JobStore

from bench import profile_redis
from bench.ours import enqueue_batched, enqueue_lib, settings


def use(lua_dir: str) -> bool:
    """Point the hot scripts at ``lua_dir`` (JobStore reads them when it is built); whether it has the lone
    submission's script (``enqueue_one``, profile 19: without it every submission goes to ``enqueue``)."""
    scripts._LUA = Path(lua_dir)
    scripts.ENQUEUE = scripts.load("enqueue")
    scripts.FINISH_CLAIM = scripts.load("finish_claim")
    lone = (Path(lua_dir) / "enqueue_one.lua").exists()
    if lone:
        scripts.ENQUEUE_ONE = scripts.load("enqueue_one")
    return lone


def enqueue_capped(store: JobStore, jobs: int) -> None:
    """Lone submissions with the API's default caps (``JOBS_MAX_PENDING``, ``JOBS_MAX_PENDING_PER_TENANT``)."""
    s = store.settings
    for i in range(jobs):
        store.enqueue("echo", {"i": i}, max_pending=s.max_pending, max_pending_per_tenant=s.max_pending_per_tenant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", help="directories holding the Lua scripts (with includes/)")
    parser.add_argument("--jobs", type=int, default=300, help="lone submissions per round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="jobs-lua-ab-"))
    with profile_redis.private_redis("callgrind", workdir) as (port, proc, out):
        assert out is not None
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis(port=port)
        for r in range(args.rounds):
            for lua_dir in args.dirs if r % 2 == 0 else args.dirs[::-1]:
                lone = use(lua_dir)
                client.flushdb()
                store = JobStore(client, settings(url))
                if not lone:
                    store._enqueue.lone = None
                row: dict[str, object] = {"dir": lua_dir, "round": r, "loadavg": round(os.getloadavg()[0], 1)}
                phases: list[tuple[str, Callable[[], Any], int]] = [
                    ("enqueue_single", partial(enqueue_lib, store, args.jobs), args.jobs),
                    ("enqueue_single_capped", partial(enqueue_capped, store, args.jobs), args.jobs),
                    ("enqueue_many_100", partial(enqueue_batched, store, 1000, 100), 1000),
                    # every job of the phases above: 2 x the lone submissions and the 1,000 batched ones
                    ("worker_finish_claim", partial(profile_redis.worker_loop, store, 4), 2 * args.jobs + 1000),
                ]
                for name, body, jobs in phases:
                    profile_redis.callgrind_phase(proc.pid, body)
                    row[name] = round(profile_redis.instructions(out) / jobs)
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
