"""JSON encoding for everything stored in Redis (never pickle: stored data must not run code)."""

from __future__ import annotations

from typing import Any

import orjson

from jobs_core.errors import JobsError


class EncodingError(JobsError, TypeError):
    """A value cannot be encoded as JSON."""


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact JSON bytes."""
    try:
        return orjson.dumps(value)
    except TypeError as e:
        raise EncodingError(str(e)) from e


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes or text."""
    return orjson.loads(data)
