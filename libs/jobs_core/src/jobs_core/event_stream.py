"""The job event stream's entry format (``Keys.event_stream``), decoded in one place for every reader.

The Lua scripts buffer the job events of one call and write them as ONE stream entry (``lua/includes/
emit.lua``; one ``XADD`` per call instead of one per job, issue 16):

- one event: fields ``job``, ``status``, ``tenant``, ``queue`` (the only form before; still written for a
  call that changed one job, so single submissions cost nothing more and old readers keep working);
- several: one field ``jobs``, a JSON array of ``[id, status, tenant, queue]`` in the order they happened;
- a queue pause / resume / cap (``lua/queue_control.lua``): ``kind`` = ``queue`` and its own fields.

Event ids, as ``GET /events`` sends them (``id:``) and takes them back (``Last-Event-ID``): the entry id
(``<ms>-<n>``) for an entry of one event (and a queue change), ``<entry id>:<k>`` for the k-th event
(from 0) of an entry of several. Resuming from ``<entry id>:<k>`` skips the first k + 1 events of that
entry; a plain entry id skips the whole entry, as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

#: The fields of one job event, as ``GET /events`` sends them (``data:``).
JOB_FIELDS = ("job", "status", "tenant", "queue")
_EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})(?::([0-9]{1,6}))?")  # ASCII digits only: \d takes "²"
_U64_MAX = 2**64 - 1  # stream id parts are unsigned 64-bit: a larger one is a Redis error


class EventBatch(NamedTuple):
    """What one read of the stream gave: ``events`` as (event id, fields), and ``cursor``, the id of the last
    stream entry read, to read on from (every entry read is whole, so this is never inside one)."""

    cursor: str
    events: list[tuple[str, dict[str, str]]]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    """A stream entry's fields as text (redis-py gives bytes)."""
    return {_text(k): _text(v) for k, v in fields.items()}


def job_events(fields: Mapping[Any, Any]) -> list[dict[str, str]]:
    """The job events of one stream entry, in order (``{job, status, tenant, queue}`` each): one for an
    entry of one event, one per element for an entry of several, none for another kind (queue changes)."""
    f = decode_fields(fields)
    if "jobs" in f:
        return [dict(zip(JOB_FIELDS, (str(v) for v in e), strict=True)) for e in orjson.loads(f["jobs"])]
    if "job" in f:
        return [{name: f.get(name, "") for name in JOB_FIELDS}]
    return []


def expand(entry_id: Any, fields: Mapping[Any, Any]) -> list[tuple[str, dict[str, str]]]:
    """One stream entry as the events ``GET /events`` sends, each with its event id: a job entry's events
    (``<entry id>`` for one, ``<entry id>:<k>`` for the k-th of several); any other entry (a queue change)
    as itself, under its entry id."""
    eid, f = _text(entry_id), decode_fields(fields)
    events = job_events(f)
    if not events:
        return [(eid, f)]
    if "jobs" not in f:
        return [(eid, events[0])]
    return [(f"{eid}:{k}", e) for k, e in enumerate(events)]


def is_event_id(text: str) -> bool:
    """Whether ``text`` is an event id this stream could have sent (``<ms>-<n>`` or ``<ms>-<n>:<k>``)."""
    m = _EVENT_ID.fullmatch(text)
    return m is not None and int(m[1]) <= _U64_MAX and int(m[2]) <= _U64_MAX


def split_id(event_id: str) -> tuple[str, int]:
    """An event id as (stream entry id, events of that entry already seen): ``<entry>:<k>`` -> (entry,
    k + 1); a plain entry id -> (entry, 0), the whole entry seen (read after it)."""
    entry, _, k = event_id.partition(":")
    return entry, (int(k) + 1 if k else 0)


def entry_of(event_id: str) -> str:
    """The stream entry id of an event id."""
    return event_id.partition(":")[0]
