"""Requests that gunicorn itself rejects (bad request line, CR/LF or NUL in a header, a header or
request line over the limits) get ``application/problem+json`` like every other error, instead of
gunicorn's HTML page. gunicorn has no hook for that body, so its ``util.write_error`` is replaced.
"""

from __future__ import annotations

import socket
from typing import Any

from gunicorn import util
from jobs_core.serialization import dumps

_DETAILS = {
    400: "The HTTP request could not be parsed (request line or headers are malformed).",
    403: "The request is forbidden.",
    414: "The request line is too long.",
    417: "The Expect header is not supported.",
    431: "The request headers are too large.",
    500: "The server could not handle the request.",
    501: "The transfer coding is not supported.",
}


def write_problem(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's error writer, answering with a problem document; ``mesg`` may echo client bytes, so
    it is not sent back (it is in gunicorn's own log line)."""
    body = dumps({
        "type": "about:blank",
        "title": reason,
        "status": status_int,
        "detail": _DETAILS.get(status_int, reason),
    }) + b"\n"
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


def install(*_: Any) -> None:
    """Make gunicorn's workers answer their own parse errors with :func:`write_problem`."""
    util.write_error = write_problem
