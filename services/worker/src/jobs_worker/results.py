"""Turning a task's return value into stored result bytes, and saying precisely why one cannot be."""

from __future__ import annotations

from typing import Any

import orjson
from jobs_core.errors import ResultNotJSON
from jobs_core.serialization import EncodingError, dumps

from jobs_worker.tasks import BinaryResult

JSON_MEDIA_TYPE = "application/json"
_MAX_DEPTH = 250  # orjson refuses deeper nesting anyway


def encode_result(value: Any) -> tuple[bytes, str]:
    """Result bytes and media type for a task's return value; :class:`ResultNotJSON` naming the culprit."""
    if isinstance(value, BinaryResult):
        return bytes(value.data), value.media_type
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "application/octet-stream"
    try:
        return dumps(value), JSON_MEDIA_TYPE
    except EncodingError as e:
        where = find_unencodable(value) or f"result: {type(value).__name__} ({e})"
        raise ResultNotJSON(
            f"the result cannot be stored as JSON: {where}; return dicts with str keys, lists, str, int, "
            "float, bool or None (e.g. a list instead of a set), or BinaryResult(bytes, media_type)"
        ) from None


def too_large(size: int, limit: int) -> str | None:
    """The ResultTooLarge message for a result of ``size`` bytes over ``limit`` (None when within it)."""
    if size <= limit:
        return None
    return f"the result is {size} bytes; the limit (JOBS_MAX_RESULT_BYTES) is {limit}"


def find_unencodable(value: Any, path: str = "result", depth: int = 0) -> str | None:
    """``"result['tags']: set"`` for the first part of ``value`` JSON cannot hold (None if all can)."""
    if depth > _MAX_DEPTH:
        return f"{path}: nested more than {_MAX_DEPTH} levels deep"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: a key of type {type(key).__name__} ({key!r:.40}); JSON object keys are strings"
            found = find_unencodable(item, f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = find_unencodable(item, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    try:
        orjson.dumps(value)
    except TypeError as e:
        detail = "" if str(e).startswith("Type is not JSON serializable") else f" ({e})"
        return f"{path}: {type(value).__name__}{detail}"
    return None
