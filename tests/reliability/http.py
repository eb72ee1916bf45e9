"""A small keep-alive HTTP/1.1 client (stdlib ``http.client``): any status is a response, I/O errors raise."""

from __future__ import annotations

import http.client
from typing import Any

from support.http_response import TERMINAL, Response, encode_request

__all__ = ["TERMINAL", "Http", "Response"]


class Http:
    """One persistent connection to the API (not thread-safe: one per thread)."""

    def __init__(self, host: str, port: int, api_key: str | None, timeout: float = 30.0) -> None:
        self.host, self.port, self.api_key, self.timeout = host, port, api_key, timeout
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Response:
        """Send one request (``body`` JSON-encoded, or ``raw`` bytes as they are)."""
        data, hdrs = encode_request(body, self.api_key if auth else None, headers)
        if data is None:
            data = raw
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, body=data, headers=hdrs)
            resp = self._conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.will_close:
            self.close()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)

    def submit(self, task: str, params: dict[str, Any], **fields: Any) -> Response:
        return self.request("POST", "/jobs", {"task": task, "params": params, **fields})
