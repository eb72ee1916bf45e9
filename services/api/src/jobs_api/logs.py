"""JSON logging: one JSON object per line for application logs and gunicorn's access/error logs.

Log collectors (Loki, CloudWatch, Stackdriver) parse these lines without a regex. Secrets never reach a
log line: the ``Authorization`` header is not logged, and the tenant name (not the key) is.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from gunicorn.glogging import Logger as _GunicornLogger

# LogRecord attributes that are not "extra" fields passed by the caller.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _ts(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON line: ts, level, logger, msg, extra fields, and exc when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RequestContextFilter(logging.Filter):
    """Adds ``request_id`` (also sent as ``X-Request-ID``) to records logged while handling a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        from flask import g, has_app_context, has_request_context

        # the fast path of POST /jobs (jobs_api.fast_submit) runs in an app context only
        in_request = has_request_context() or (has_app_context() and g.get("request_id") is not None)
        if in_request and not hasattr(record, "request_id"):
            record.request_id = g.get("request_id")
        return True


def configure_logging(level: str = "INFO") -> None:
    """Send the root logger to stderr as JSON lines (idempotent: replaces handlers it added before)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_jobs_api", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    handler._jobs_api = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


class GunicornLogger(_GunicornLogger):  # type: ignore[misc]
    """gunicorn logger class writing its error log and access log as JSON lines."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        """One JSON line per request (method, path, status, duration, sizes, client, request id)."""
        if not self.access_log_enabled:
            return
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        try:
            status_code: int | str = int(status)
        except (TypeError, ValueError):
            status_code = str(status)
        headers = {k.lower(): v for k, v in (resp.headers or [])}
        self.access_log.info(
            "request",
            extra={
                "type": "access",
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "query": environ.get("QUERY_STRING") or None,
                "status": status_code,
                "duration_ms": round(request_time.total_seconds() * 1000, 3),
                "bytes": getattr(resp, "sent", None),
                "remote": environ.get("REMOTE_ADDR"),
                "user_agent": environ.get("HTTP_USER_AGENT"),
                "request_id": headers.get("x-request-id"),
            },
        )

    def now(self) -> str:
        return _ts(time.time())


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def request_id(incoming: str) -> str:
    """The request id of a request: the client's ``X-Request-ID`` when well-formed, else a new one."""
    return incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
