"""Lua scripts: every change that touches more than one key happens in one of these, atomically.

One file per command in ``jobs_core/lua/`` (shared helpers in ``lua/includes/``, pulled in by a
``--- @include "name"`` line, each at most once per script, as BullMQ does). Each command file documents
its KEYS and ARGV. Times come from the Redis server clock (``TIME``), so workers and API pods with skewed
clocks agree on leases and due times. Queue entries are JSON-encoded ids (``"<uuid>"``), as ``hotqueue``
with ``serializer=json`` writes them. Job hashes are found from ids with the job key prefix passed in ARGV
(the deployment is a single Redis, not a cluster). The files ship as package data and are read once, at
import.
"""

from __future__ import annotations

import re
from importlib import resources

_INCLUDE = re.compile(r'^--- @include "([a-z_]+)"\s*$', re.M)
_LUA = resources.files("jobs_core") / "lua"


def load(name: str) -> str:
    """The source of command ``name`` with its includes expanded (each included once, in order)."""
    seen: set[str] = set()

    def expand(text: str) -> str:
        def include(m: re.Match[str]) -> str:
            inc = m.group(1)
            if inc in seen:
                return ""
            seen.add(inc)
            return expand((_LUA / "includes" / f"{inc}.lua").read_text(encoding="utf-8"))

        return _INCLUDE.sub(include, text)

    return expand((_LUA / f"{name}.lua").read_text(encoding="utf-8"))


ENQUEUE = load("enqueue")
ENQUEUE_ONE = load("enqueue_one")  # a lone submission of one job (jobs_core.group_commit)
HEARTBEAT = load("heartbeat")
WAITERS = load("waiters")
PROGRESS = load("progress")
FINISH_CLAIM = load("finish_claim")
CANCEL = load("cancel")
RETRY = load("retry")
REAP = load("reap")
QUEUE_CONTROL = load("queue_control")
BROWSE = load("browse")
# console bulk actions (jobs_core.bulk_store)
BULK_START = load("bulk_start")
BULK_CLAIM = load("bulk_claim")
BULK_CHUNK = load("bulk_chunk")
BULK_RELEASE = load("bulk_release")
# schedules (jobs_core.schedule_store)
PUT_SCHEDULE = load("put_schedule")
DELETE_SCHEDULE = load("delete_schedule")
FIRE_SCHEDULE = load("fire_schedule")
# workflows (jobs_core.flow_store; the release is in includes/release.lua)
SUBMIT_FLOW = load("submit_flow")
# webhooks (jobs_core.webhooks; the outbox write is in includes/release.lua)
WEBHOOK_TAKE = load("webhook_take")
WEBHOOK_ATTEMPT = load("webhook_attempt")
ROTATE_WEBHOOK_SECRET = load("rotate_webhook_secret")
PUT_WEBHOOK_SUBSCRIPTION = load("put_webhook_subscription")  # jobs_core.subscriptions
AUTH_FAILURE = load("auth_failure")
