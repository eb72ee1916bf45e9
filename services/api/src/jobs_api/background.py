"""Background threads of an API process: the schedule ticker (and the declared schedules it applies), the
webhook dispatcher (``jobs_core.webhooks``: several share the outbox through a consumer group) and the
console's bulk runner (``jobs_core.bulk_store``: takes over bulk actions whose API process died).

Started by gunicorn's ``post_worker_init`` in every API process. Several tickers are harmless: every
tick is enqueued exactly once whichever gets there first (``jobs_core.ticker``).

Declared schedules (``JOBS_SCHEDULES_FILE``, the chart's ``schedules`` value as a ConfigMap) are a JSON
list of schedule definitions, each with ``name`` and optional ``tenant`` (default ``default``); they are
applied at start by every process, idempotently (an unchanged definition changes nothing).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask
from jobs_core.errors import ConfigError, InvalidSchedule
from jobs_core.schedules import SCHEDULE_NAME, ScheduleSpec
from jobs_core.store import JobStore
from jobs_core.ticker import Ticker
from jobs_core.webhooks import Dispatcher

from jobs_api import openapi_flows
from jobs_api.state import EXTENSION, State
from jobs_api.validation import schema_errors

log = logging.getLogger("jobs_api")


@dataclass(frozen=True)
class Declared:
    """One schedule from the schedules file."""

    tenant: str
    name: str
    spec: ScheduleSpec
    paused: bool


def load_declared(path: str) -> list[Declared]:
    """Parse and validate the schedules file; :class:`ConfigError` naming the first bad entry."""
    try:
        with open(path, "rb") as fh:
            items = orjson.loads(fh.read())
    except (OSError, orjson.JSONDecodeError) as e:
        raise ConfigError(f"JOBS_SCHEDULES_FILE: cannot read {path}: {e}") from e
    if not isinstance(items, list):
        raise ConfigError("JOBS_SCHEDULES_FILE: must be a JSON list of schedules")
    out: list[Declared] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"JOBS_SCHEDULES_FILE: entry {i} is not an object")
        tenant, name = str(item.pop("tenant", "default")), str(item.pop("name", ""))
        if not SCHEDULE_NAME.match(name) or not SCHEDULE_NAME.match(tenant):
            raise ConfigError(f"JOBS_SCHEDULES_FILE: entry {i}: name and tenant are 1-64 of [A-Za-z0-9_.-]")
        errors = schema_errors(openapi_flows.SCHEMAS["ScheduleRequest"], item)
        paused = bool(item.pop("paused", False))
        try:
            if errors:
                raise InvalidSchedule([(e["path"], e["message"]) for e in errors])
            spec = ScheduleSpec.from_dict(item)
            spec.validate()
        except InvalidSchedule as e:
            raise ConfigError(f"JOBS_SCHEDULES_FILE: schedule {name!r}: {e}") from e
        out.append(Declared(tenant, name, spec, paused))
    return out


def apply_declared(store: JobStore, declared: list[Declared]) -> None:
    """Create or update each declared schedule (no cap: the operator declared them)."""
    for d in declared:
        _, outcome = store.put_schedule(d.tenant, d.name, d.spec, paused=d.paused)
        if outcome != "unchanged":
            log.info("declared schedule %s/%s %s", d.tenant, d.name, outcome)


DECLARED = "jobs_api.declared_schedules"


def start_dispatcher(st: State) -> Dispatcher | None:
    """Start this process's webhook dispatcher (unless ``JOBS_WEBHOOKS=off``); returns it."""
    if not st.settings.webhooks_enabled:
        return None
    from jobs_api.metrics import WEBHOOK_DELIVERIES

    dispatcher = Dispatcher(st.store, f"{socket.gethostname()}:{os.getpid()}",
                            observe=lambda outcome: WEBHOOK_DELIVERIES.labels(outcome).inc())
    dispatcher.start()
    return dispatcher


def start(app: Flask) -> Ticker | None:
    """Start this process's ticker (unless ``JOBS_SCHEDULER=off``), webhook dispatcher and bulk runner;
    returns the ticker."""
    if EXTENSION not in app.extensions:  # another app under the same gunicorn settings (bench's hello app)
        return None
    st: State = app.extensions[EXTENSION]
    s = st.settings
    start_dispatcher(st)
    from jobs_api import console

    console.start_bulk_runner(app)
    declared: list[Declared] = app.extensions.get(DECLARED, [])
    if not s.scheduler_enabled:
        if declared:
            apply_declared(st.store, declared)
        return None

    def prepare(store: Any = st.store) -> None:
        apply_declared(store, declared)

    ticker = Ticker(st.store, s.schedule_tick_seconds, s.schedule_grace_seconds, prepare if declared else None)
    ticker.start()
    return ticker
