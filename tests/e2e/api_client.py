"""A deliberately tiny stdlib HTTP client for the e2e scenarios (independent of ``jobs_client``).

The scenarios test the HTTP contract itself, so they speak plain HTTP: every call returns a
:class:`Response` whatever the status, and only transport failures raise.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from support.http_response import TERMINAL, Response, encode_request

__all__ = ["TERMINAL", "Api", "Response"]


class Api:
    """HTTP calls against one Jobs API base URL (``http://host:port``), with an optional bearer key."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request; JSON-encode ``body`` when given. Returns any status, raises on I/O errors."""
        data, hdrs = encode_request(body, self.api_key if auth else None, headers)
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    # ------------------------------------------------------------------ job helpers
    def submit(self, task: str, params: dict[str, Any], **fields: Any) -> Response:
        """POST /jobs."""
        return self.request("POST", "/jobs", {"task": task, "params": params, **fields})

    def submit_ok(self, task: str, params: dict[str, Any], **fields: Any) -> dict[str, Any]:
        """POST /jobs expecting 202 (retrying 429 backpressure); the job."""
        deadline = time.monotonic() + 60
        while True:
            r = self.submit(task, params, **fields)
            if r.status == 429 and time.monotonic() < deadline:
                time.sleep(float(r.headers.get("retry-after", "1")))
                continue
            assert r.status == 202, f"POST /jobs {task}: {r}"
            job: dict[str, Any] = r.json()
            return job

    def job(self, job_id: str, wait: float | None = None) -> dict[str, Any]:
        """GET /jobs/<id>[?wait=N] expecting 200."""
        path = f"/jobs/{job_id}" + (f"?wait={wait:g}" if wait else "")
        r = self.request("GET", path, timeout=(wait or 0) + self.timeout)
        assert r.status == 200, f"GET {path}: {r}"
        data: dict[str, Any] = r.json()
        return data

    def wait_status(self, job_id: str, statuses: set[str] | frozenset[str], timeout: float) -> dict[str, Any]:
        """Poll (long-poll for terminal states) until the job's status is in ``statuses``.

        Transport errors and 5xx answers (e.g. while Redis restarts, or an ingress without a ready
        backend) are retried until ``timeout``; the last job seen is in the assertion message.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            left = deadline - time.monotonic()
            wait = 0 if not statuses <= TERMINAL else max(0, min(10, int(left)))
            try:
                path = f"/jobs/{job_id}" + (f"?wait={wait}" if wait else "")
                r = self.request("GET", path, timeout=wait + self.timeout)
                if r.status == 200:
                    last = r.json()
                    if last["status"] in statuses:
                        return last  # type: ignore[no-any-return]
                else:
                    assert r.status in (502, 503, 504), f"GET {path}: {r}"
                    last = str(r)
            except OSError as e:  # connection refused/reset while a component restarts
                last = repr(e)
            if time.monotonic() >= deadline:
                raise AssertionError(f"job {job_id} not in {sorted(statuses)} after {timeout:.0f}s: {last}")
            if not wait:
                time.sleep(0.1)

    def wait_all(self, job_ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        """Wait until every job is terminal; returns id -> final job."""
        deadline = time.monotonic() + timeout
        return {
            jid: self.wait_status(jid, TERMINAL, max(1.0, deadline - time.monotonic())) for jid in job_ids
        }
