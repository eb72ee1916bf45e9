"""One HTTP exchange as the stdlib test clients (e2e scenarios, reliability harness) return it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


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
