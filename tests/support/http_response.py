"""One HTTP exchange as the stdlib test clients (e2e scenarios, reliability harness) return it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def encode_request(body: Any, api_key: str | None, headers: dict[str, str] | None = None
                   ) -> tuple[bytes | None, dict[str, str]]:
    """A request's body (``body`` JSON-encoded, None without one) and headers: Content-Type for a JSON body,
    the bearer ``api_key`` when given, then ``headers`` (which win)."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    if api_key:
        hdrs["Authorization"] = f"Bearer {api_key}"
    hdrs.update(headers or {})
    return data, hdrs


def server_errors(statuses: Mapping[int, int]) -> int:
    """Of answers counted by status, the 5xx other than 503 (503 is the promised answer while Redis is down)."""
    return sum(n for s, n in statuses.items() if s >= 500 and s != 503)


@dataclass
class Response:
    """Status, headers (lower-cased names) and raw body of one HTTP exchange."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        """The media type, without parameters."""
        return self.headers.get("content-type", "").split(";")[0].strip()

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.content_type} {self.body[:300]!r}"
