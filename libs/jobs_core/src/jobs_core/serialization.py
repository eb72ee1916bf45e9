"""JSON encoding for everything stored in Redis (never pickle: stored data must not run code)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from jobs_core.errors import JobsError


class EncodingError(JobsError, TypeError):
    """A value cannot be encoded as JSON."""


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Encode ``value`` as compact JSON bytes (``default`` converts otherwise unencodable values)."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError as e:
        raise EncodingError(str(e)) from e


def loads(data: bytes | str) -> Any:
    """Decode JSON bytes or text."""
    return orjson.loads(data)
