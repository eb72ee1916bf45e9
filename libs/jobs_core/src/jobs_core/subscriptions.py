"""Tenant-level webhook subscriptions: one per tenant, a URL and optional filters (statuses, tasks).

Every terminal transition of a tenant's job that the filters take gets a webhook event to the subscription's
URL, besides the one to the job's own ``callback_url`` (a job with both gets both, with different event
ids). The event is written to the outbox by the script that makes the job terminal
(``lua/includes/release.lua``), which reads the subscription at that moment: a change applies to the
transitions after it, and events already written go where they were addressed. Delivery is the
dispatchers' (:mod:`jobs_core.webhooks`), signed with the tenant's secret as any other event.
The URL is checked by the caller as a ``callback_url`` is (:func:`jobs_core.webhooks.check_url`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from jobs_core import scripts
from jobs_core.serialization import dumps, loads
from jobs_core.store import JobStore

#: Statuses a subscription may filter on (the terminal ones).
TERMINAL = ("succeeded", "failed", "cancelled")
#: Most task names one subscription's filter may list.
MAX_TASKS = 100


@dataclass(frozen=True, slots=True)
class Subscription:
    """A tenant's subscription; ``statuses``/``tasks`` None = every status / task."""

    url: str
    statuses: tuple[str, ...] | None
    tasks: tuple[str, ...] | None
    created_at: int  # ms
    updated_at: int  # ms

    @classmethod
    def from_json(cls, raw: bytes | str) -> Subscription:
        """Decode what :class:`WebhookSubscriptions` stored."""
        d = cast(dict[str, Any], loads(raw))
        statuses, tasks = d.get("statuses"), d.get("tasks")
        return cls(str(d["url"]), tuple(statuses) if statuses else None, tuple(tasks) if tasks else None,
                   int(d["created_at"]), int(d["updated_at"]))

    def takes(self, status: str, task: str) -> bool:
        """Whether a job of ``task`` ending ``status`` is sent here (what the Lua script decides)."""
        return (self.statuses is None or status in self.statuses) and (self.tasks is None or task in self.tasks)


class WebhookSubscriptions:
    """Read and change tenants' subscriptions in :attr:`Keys.webhook_subscriptions`."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._put = store.redis.register_script(scripts.PUT_WEBHOOK_SUBSCRIPTION)

    def put(self, tenant: str, url: str, *, statuses: Sequence[str] | None = None,
            tasks: Sequence[str] | None = None) -> tuple[Subscription, bool]:
        """Create or replace ``tenant``'s subscription; ``(subscription, created)``. Empty filters are None."""
        bad = [s for s in statuses or () if s not in TERMINAL]
        if bad:
            raise ValueError(f"not a terminal status: {bad[0]!r}")
        body = {"url": url, "statuses": sorted(set(statuses)) if statuses else None,
                "tasks": sorted(set(tasks)) if tasks else None}
        created, raw = self._put(keys=[self.store.keys.webhook_subscriptions], args=[tenant, dumps(body)])
        return Subscription.from_json(raw), created in (b"1", "1", 1)

    def get(self, tenant: str) -> Subscription | None:
        """``tenant``'s subscription, or None."""
        raw = self.store.redis.hget(self.store.keys.webhook_subscriptions, tenant)
        return Subscription.from_json(cast(bytes, raw)) if raw else None

    def delete(self, tenant: str) -> bool:
        """Remove ``tenant``'s subscription (later transitions send nothing to it); whether there was one."""
        return bool(self.store.redis.hdel(self.store.keys.webhook_subscriptions, tenant))
