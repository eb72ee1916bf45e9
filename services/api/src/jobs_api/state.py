"""Per-app state shared by the blueprints (settings, store, authenticator) and small response helpers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from flask import Response, current_app
from jobs_core.config import Settings

if TYPE_CHECKING:
    from jobs_core.store import JobStore

    from jobs_api.auth import Authenticator  # a type only: auth looks the state up at request time

EXTENSION = "jobs_api"


@dataclass(frozen=True)
class State:
    """What the views need, built once by ``create_app``."""

    settings: Settings
    store: JobStore
    auth: Authenticator


def state() -> State:
    """The current app's :class:`State`."""
    st: State = current_app.extensions[EXTENSION]
    return st


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response encoded with orjson."""
    resp = Response(json_bytes(body), status=status, mimetype="application/json")
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


def json_bytes(body: Any) -> bytes:
    """``body`` encoded as a JSON response body."""
    # a trailing newline, like jsonify: curl output then ends its line
    return orjson.dumps(body) + b"\n"
