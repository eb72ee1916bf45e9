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
#: a top-level ``local function name(...)`` of an include, up to its closing ``end`` (column 0)
_FUNCTION = re.compile(r"^local function ([A-Za-z_]\w*)\(.*?^end$\n?", re.M | re.S)
_WORD = re.compile(r"[A-Za-z_]\w*")
_COMMENT_LINE = re.compile(r"^\s*--.*$", re.M)


def _names(code: str) -> set[str]:
    """The identifiers ``code`` mentions outside whole-line comments (a mention in a string or a trailing
    comment counts too: a function kept in vain costs a closure, one dropped in error breaks the command)."""
    return set(_WORD.findall(_COMMENT_LINE.sub("", code)))


def _shake(command: str, includes: list[str]) -> str:
    """The includes without the top-level functions that nothing in the command uses (directly or through a
    function it keeps). Every call of a script runs its prelude, which makes one closure per ``local
    function`` (~800 Redis instructions each; a lone submission's script used 12 of the 25 it defined,
    issue 16 profile 29): a function that is never called need not be made."""
    defined: dict[str, str] = {}
    for text in includes:
        for m in _FUNCTION.finditer(text):
            defined[m.group(1)] = m.group(0)
    rest = command + "".join(_FUNCTION.sub("", text) for text in includes)
    used: set[str] = set()
    known = set(defined)  # names of the include functions (Lua source text, not Redis keys)
    todo = _names(rest) & known
    while todo:
        name = todo.pop()
        used.add(name)
        todo |= (_names(defined[name][len("local function "):]) & known) - used
    return "".join(_FUNCTION.sub(lambda m: m.group(0) if m.group(1) in used else "", text) for text in includes)


def load(name: str) -> str:
    """The source of command ``name`` with its includes expanded (each included once, in order, before the
    command's own code) less the include functions it never calls (:func:`_shake`)."""
    seen: set[str] = set()
    parts: list[str] = []

    def expand(text: str) -> str:
        def include(m: re.Match[str]) -> str:
            inc = m.group(1)
            if inc in seen:
                return ""
            seen.add(inc)
            parts.append(expand((_LUA / "includes" / f"{inc}.lua").read_text(encoding="utf-8")))
            return ""

        return _INCLUDE.sub(include, text)

    command = expand((_LUA / f"{name}.lua").read_text(encoding="utf-8"))
    return _shake(command, parts) + command


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
