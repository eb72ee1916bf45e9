"""The audit log: one entry per state-changing action, kept in a capped Redis stream (``Keys.audit``).

An entry says who (tenant, a short id of the API key — never the key —, role), what (``action``, e.g.
``queue.pause``, ``job.cancel``, ``login``), on what (``target``, e.g. ``queue:jobs``, ``job:<id>``), how
many (``count``: jobs or objects changed, 0 for a request that changed nothing), how it ended (``outcome``:
``ok``, ``denied``, ``failed``, or ``started`` for a bulk action under way), through what (``via``: ``api``
or ``console``) and when (the stream entry id is the Redis server time in ms). Queue pause / resume / cap
write their entry in the same Lua script as the change (``lua/includes/audit.lua``); other actions are
recorded by the API right after the action succeeded (:meth:`AuditLog.record`). Console bulk actions
record their start and end in their own scripts (``lua/includes/bulk_audit.lua``).

The stream keeps about :data:`jobs_core.keys.AUDIT_STREAM_MAXLEN` entries (trimmed on write, oldest first);
at ~300 bytes an entry that is ~30 MB of Redis memory at most.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import redis

from jobs_core import scripts
from jobs_core.keys import AUDIT_STREAM_MAXLEN, Keys

#: Entries one read examines at most (filters are applied while reading: a page stays cheap however large
#: the log and however selective the filter; the caller continues from the returned cursor).
SCAN_LIMIT = 5_000
_FIELDS = ("action", "target", "count", "outcome", "tenant", "key", "role", "via", "detail")


@dataclass(frozen=True)
class Actor:
    """Who did something: tenant, a short id of the API key (never the key), role, and ``api``/``console``."""

    tenant: str
    key_id: str
    role: str
    via: str

    def args(self) -> list[str]:
        """The four ARGV a Lua script that writes an audit entry takes (``lua/includes/audit.lua``)."""
        return [self.tenant, self.key_id, self.role, self.via]


#: An action taken by the system itself (tests, maintenance scripts): no key, no role.
SYSTEM = Actor("", "", "", "system")


@dataclass(frozen=True)
class AuditQuery:
    """What to read: newest first from before ``before`` (a stream id; None: from the newest)."""

    before: str | None = None
    limit: int = 100
    tenant: str | None = None  # None: every tenant (admins)
    action: str | None = None  # exact, or a prefix ending in "." ("queue." = every queue action)
    outcome: str | None = None
    via: str | None = None
    target: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        """Whether ``entry`` passes every filter set."""
        action = self.action
        if action and not (entry["action"] == action or (action.endswith(".") and entry["action"].startswith(action))):
            return False
        return all(want is None or entry[name] == want for name, want in
                   (("tenant", self.tenant), ("outcome", self.outcome), ("via", self.via), ("target", self.target)))


def entry_from(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """An audit stream entry as the API returns it."""
    at_ms = int(entry_id.split("-", 1)[0])
    out: dict[str, Any] = {"id": entry_id, "at": datetime.fromtimestamp(at_ms / 1000, UTC).isoformat()
                           .replace("+00:00", "Z"), "at_ms": at_ms}
    for name in _FIELDS:
        out[name] = fields.get(name, "")
    out["count"] = int(out["count"]) if str(out["count"]).isdigit() else 0
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class AuditLog:
    """The audit log of :class:`jobs_core.store.JobStore`."""

    redis: redis.Redis
    keys: Keys

    def record(self, actor: Actor, action: str, target: str, *, count: int = 1, outcome: str = "ok",
               detail: str = "") -> str:
        """Append one entry (after the action it records: see the module docstring); its stream id."""
        fields = {"action": action, "target": target, "count": str(count), "outcome": outcome,
                  "tenant": actor.tenant, "key": actor.key_id, "role": actor.role, "via": actor.via,
                  "detail": detail[:2000]}
        return _text(self.redis.xadd(self.keys.audit, fields,  # type: ignore[arg-type]
                                     maxlen=AUDIT_STREAM_MAXLEN, approximate=True))

    def audit_entries(self, query: AuditQuery) -> tuple[list[dict[str, Any]], str | None]:
        """Entries matching ``query``, newest first, and the cursor to pass as ``before`` for the next page
        (None at the end of the log). Examines at most :data:`SCAN_LIMIT` entries per call."""
        out: list[dict[str, Any]] = []
        if query.before is not None and all(int(part) == 0 for part in query.before.split("-")):
            return out, None  # nothing is older than 0-0 (and Redis refuses the interval "(0-0")
        high = f"({query.before}" if query.before else "+"
        if query.until_ms is not None and not query.before:
            high = str(query.until_ms)
        low = str(query.since_ms) if query.since_ms is not None else "-"
        examined = 0
        cursor: str | None = None
        while examined < SCAN_LIMIT and len(out) < query.limit:
            chunk = cast(list[tuple[bytes, dict[bytes, bytes]]],
                         self.redis.xrevrange(self.keys.audit, high, low, count=min(500, SCAN_LIMIT)))
            if not chunk:
                return out, None
            for raw_id, raw in chunk:
                examined += 1
                cursor = _text(raw_id)
                entry = entry_from(cursor, {_text(k): _text(v) for k, v in raw.items()})
                if (query.until_ms is None or entry["at_ms"] <= query.until_ms) and query.matches(entry):
                    out.append(entry)
                    if len(out) >= query.limit:
                        return out, cursor
            high = f"({cursor}"
        return out, cursor

    def count_auth_failure(self, address: str, key_prefix: str, window_seconds: int) -> tuple[int, int, int, int]:
        """Count a failed API-key authentication of ``address`` with a key starting ``key_prefix`` (both kept
        only as hashes); (address count, its seconds left, prefix count, its seconds left) in this window."""
        script = self.__dict__.get("_auth_failure")
        if script is None:
            script = self.__dict__["_auth_failure"] = self.redis.register_script(scripts.AUTH_FAILURE)
        keys = [self.keys.auth_failures(kind, hashlib.sha256(who.encode("utf-8", "surrogatepass")).hexdigest()[:32])
                for kind, who in (("ip", address), ("key", key_prefix))]
        n_ip, ms_ip, n_key, ms_key = (int(x) for x in script(keys=keys, args=[window_seconds * 1000]))
        return n_ip, -(-ms_ip // 1000), n_key, -(-ms_key // 1000)

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` entries of every tenant."""
        return self.audit_entries(AuditQuery(limit=limit))[0]
