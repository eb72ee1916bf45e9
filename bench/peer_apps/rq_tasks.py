"""RQ: the no-op task (results are stored by RQ itself, default result TTL)."""

from __future__ import annotations

from typing import Any


def noop(params: dict[str, Any]) -> dict[str, Any]:
    """Return the params (same work as our ``echo``)."""
    return params
