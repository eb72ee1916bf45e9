"""Redis server settings Jobs API ships with every Redis it starts (Helm chart, ``k8s/base``, ``make run``,
the benchmark's and tests' private servers): one place, read by each of them and checked by the tests.

``hash-max-listpack-value``: Redis keeps a hash in the compact *listpack* encoding (one contiguous buffer)
while every value is at most this many bytes (and it has at most ``hash-max-listpack-entries`` fields,
128-512 by version: a job record has ~20); one longer value converts it for good to a *hashtable* (a
dict entry and two string objects per field), about 3x the bytes. Redis' default, 64, is shorter than
what most finished records hold: ``attempt_log`` (~100 B per attempt), typical ``params`` (~100 B) and
``error`` (type, message and traceback, ~0.5-2 KB). Measured (``bench/analysis.md``, profile 15, Redis
7.0): a finished ``echo`` record 1,584 B → 552 B, a failed one 2,016 B → 1,128 B, a queued record with
108 B of params 968 B → 424 B. The price: a field lookup in a listpack walks the fields (O(fields), ~20,
skipping each value by its length header) and a write rewrites the buffer (O(bytes), a few KB at most);
the A/B of Redis CPU per job showed no difference beyond the noise. 2048 covers a traceback of a few
frames; a larger value (big params, a long traceback) still makes that one record a hashtable, so the
setting bounds the buffer a write moves. It applies to every hash of the deployment (schedules,
workflows, the task catalogue), all of them small.

A Redis of yours (``redis.mode=external``) works without it; set it there (``CONFIG SET`` or
``redis.conf``) to get the same bytes per job.
"""

from __future__ import annotations

#: ``hash-max-listpack-value`` Jobs API ships (Redis' default is 64): keeps a typical job record, queued,
#: finished or failed, in the listpack encoding.
HASH_MAX_LISTPACK_VALUE = 2048

#: Every setting above, as ``CONFIG SET`` / ``redis.conf`` names and values.
REDIS_SERVER_CONFIG: dict[str, str] = {"hash-max-listpack-value": str(HASH_MAX_LISTPACK_VALUE)}


def redis_server_args() -> list[str]:
    """:data:`REDIS_SERVER_CONFIG` as ``redis-server`` command-line arguments (``--name value`` pairs)."""
    return [arg for name, value in REDIS_SERVER_CONFIG.items() for arg in (f"--{name}", value)]
