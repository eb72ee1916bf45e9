"""What the command-line tools share: the usage error and the ``key=value`` params parser."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


class UsageError(Exception):
    """Bad command-line input (exit 2)."""


def parse_params(pairs: Sequence[str], params_json: str | None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they are JSON, else kept as strings) over ``--params``."""
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except ValueError as e:
            raise UsageError(f"--params is not valid JSON: {e}") from e
        if not isinstance(loaded, dict):
            raise UsageError("--params must be a JSON object")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"expected key=value, got {pair!r}")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params
