"""``JobsClient``: a small HTTP client for the Jobs API built on :mod:`urllib` (no dependencies)."""

from __future__ import annotations

import builtins
import json
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
#: Longest single long-poll the server allows (GET /jobs/<id>?wait=N, N <= 60).
MAX_SERVER_WAIT = 60.0
#: Most jobs one :meth:`JobsClient.submit_many` call may hold (the server's limit).
MAX_BATCH_JOBS = 1000
#: Statuses that mean "try again shortly" while waiting (gateway errors during a rollout, Redis outage).
RETRYABLE_STATUSES = frozenset({502, 503, 504})
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]+$")


class JobsClientError(Exception):
    """Any error of this client."""


class JobsConfigError(JobsClientError, ValueError):
    """The client was given a bad base URL or API key (from its arguments, ``JOBS_URL`` or ``JOBS_API_KEY``)."""


class JobsConnectionError(JobsClientError):
    """The API could not be reached (refused, DNS, timeout)."""


class JobFailed(JobsClientError):
    """Raised by :meth:`JobsClient.wait` with ``raise_on_failure=True`` when the job ended ``failed`` or
    ``cancelled``. ``job`` is the job as the API returned it; ``job["error"]`` (``type``, ``message``,
    ``traceback``) says why it failed (None for a cancel)."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        self.job = dict(job)
        self.status = str(job["status"])
        error = job.get("error") or {}
        self.error_type: str | None = error.get("type")
        self.error_message: str | None = error.get("message")
        reason = f": {self.error_type}: {self.error_message}" if self.error_type else ""
        super().__init__(f"job {job['id']} {self.status}{reason}")


class WaitTimeout(JobsClientError):
    """Raised by :meth:`JobsClient.wait` with ``raise_on_failure=True`` when ``timeout`` passed before the
    job ended; ``job`` is the job as last seen (``queued`` or ``running``). The job itself goes on."""

    def __init__(self, job: Mapping[str, Any], timeout: float) -> None:
        self.job = dict(job)
        super().__init__(f"job {job['id']} still {job['status']} after {timeout:g}s")


class JobsAPIError(JobsClientError):
    """The API answered with an error status; ``problem`` holds its problem details (RFC 9457)."""

    def __init__(self, status: int, problem: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.problem = dict(problem)
        self.headers = dict(headers or {})
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = str(problem.get("detail") or "")
        super().__init__(f"{status} {self.title}: {self.detail}" if self.detail else f"{status} {self.title}")

    @property
    def errors(self) -> builtins.list[dict[str, str]]:
        """Validation failures (``path``, ``message``), if any."""
        return list(self.problem.get("errors") or [])

    @property
    def job_status(self) -> str | None:
        """On a 409: the job's status."""
        value = self.problem.get("job_status")
        return str(value) if value is not None else None


class JobsClient:
    """Talks to one Jobs API.

    ``base_url`` defaults to ``$JOBS_URL`` (else http://127.0.0.1:8000) and ``api_key`` to
    ``$JOBS_API_KEY`` (sent as ``Authorization: Bearer``); a malformed one raises :class:`JobsConfigError`.
    ``timeout`` bounds each request (a long-poll adds its wait); ``outage_tolerance`` is how long
    :meth:`wait` rides out an unreachable API or a 502/503/504; ``retries`` is how often a 429 (and a 503
    on a request that is safe to repeat) is retried after ``Retry-After``, at most ``max_retry_delay`` s.

    Jobs are plain dicts as the API returns them (``id``, ``status``, ``progress``, ``error``, ...). Every
    error raised derives from :class:`JobsClientError`: :class:`JobsAPIError` (the API answered an error,
    with its problem details), :class:`JobsConnectionError`, :class:`JobsConfigError`, and from
    :meth:`wait` with ``raise_on_failure=True`` :class:`JobFailed` and :class:`WaitTimeout`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        outage_tolerance: float = 60.0,
        retries: int = 3,
        max_retry_delay: float = 10.0,
    ) -> None:
        self.base_url = _base_url(base_url or os.environ.get("JOBS_URL") or DEFAULT_URL)
        self.api_key = _api_key(api_key if api_key is not None else (os.environ.get("JOBS_API_KEY") or None))
        self.timeout = timeout
        #: How long :meth:`wait` keeps retrying while the API is unreachable or answers 502/503/504.
        self.outage_tolerance = outage_tolerance
        #: How often a 429 (or a 503 on a repeatable request) is retried, honouring Retry-After.
        self.retries = retries
        self.max_retry_delay = max_retry_delay

    # ------------------------------------------------------------------ transport
    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a request; return (status, headers, body) for 2xx, raise :class:`JobsAPIError` otherwise.

        ``429`` (queue full: nothing was accepted) and, for requests that are safe to repeat (GET, or any
        request with an ``Idempotency-Key``), ``503`` are retried up to ``retries`` times, each after the
        server's ``Retry-After`` (capped at ``max_retry_delay``).
        """
        attempt = 0
        while True:
            try:
                return self._send(method, path, query=query, body=body, headers=headers, timeout=timeout)
            except JobsAPIError as e:
                repeatable = method == "GET" or "Idempotency-Key" in (headers or {})
                if attempt >= self.retries or not (e.status == 429 or (e.status == 503 and repeatable)):
                    raise
                attempt += 1
                time.sleep(min(self.max_retry_delay, _retry_after(e.headers.get("retry-after"))))

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        url = self.base_url + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None
        all_headers = {
            "Accept": "application/json, application/problem+json;q=0.9, */*;q=0.1",
            "User-Agent": "jobs-client/0.1",
        }
        if body is not None:
            data = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        if self.api_key:
            all_headers["Authorization"] = f"Bearer {self.api_key}"
        all_headers.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            resp_headers = {k.lower(): v for k, v in (e.headers or {}).items()}
            try:
                problem = json.loads(raw) if raw else {}
                if not isinstance(problem, dict):
                    problem = {"detail": str(problem)}
            except ValueError:
                problem = {"detail": raw[:500].decode("utf-8", "replace")}
            raise JobsAPIError(e.code, problem, resp_headers) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise JobsConnectionError(f"cannot reach the Jobs API at {self.base_url}: {reason}") from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        _, _, raw = self.request(method, path, **kwargs)
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------------ jobs
    def submit(
        self,
        task: str,
        params: Mapping[str, Any] | None = None,
        *,
        max_attempts: int | None = None,
        timeout: float | None = None,
        delay: float | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        depends_on: Sequence[str | Mapping[str, str]] | None = None,
        wait: float | None = None,
    ) -> dict[str, Any]:
        """Submit a job; returns it (status ``queued``). ``priority`` 0..9 (default 5): higher runs first.
        ``callback_url``: where a signed webhook is POSTed each time the job ends (see the README's Webhooks).
        ``depends_on``: job ids (or ``{"job", "on_failure"}``) it waits for (status ``waiting`` until the last
        one ends; with ``delay``, it also runs no earlier than ``delay`` seconds from now).

        ``wait``: ask the server to hold the request up to that many seconds (whole seconds, rounded up;
        ``Prefer: wait``) until the job ends: the job is then returned finished, with its result inline as
        ``"result"`` when it succeeded with a JSON result — submit -> result in one request. When the wait
        passes first (or the server cannot hold it) the job comes back as it is, as without ``wait``."""
        body: dict[str, Any] = {"task": task, "params": dict(params or {})}
        for name, value in (("max_attempts", max_attempts), ("timeout", timeout), ("delay", delay),
                            ("priority", priority), ("callback_url", callback_url),
                            ("depends_on", None if depends_on is None else [d if isinstance(d, str) else dict(d)
                                                                          for d in depends_on])):
            if value is not None:
                body[name] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        held = max(1, math.ceil(wait)) if wait else 0
        if held:
            headers["Prefer"] = f"wait={held}"
        job: dict[str, Any] = self._json("POST", "/jobs", body=body, headers=headers or None,
                                         timeout=self.timeout + held)
        return job

    def submit_many(
        self, jobs: Sequence[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """Submit up to :data:`MAX_BATCH_JOBS` jobs at once, all or none (``POST /jobs/batch``); returns them
        in order.

        Each job is what :meth:`submit` sends: ``{"task", "params"?, "priority"?, "max_attempts"?,
        "timeout"?, "delay"?, "callback_url"?}`` (every job the same ``callback_url``, or none). When one is
        invalid nothing is queued and :class:`JobsAPIError` lists every bad one (``errors`` paths such as
        ``/jobs/3/params/limit``; ``problem["invalid_items"]``).
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        reply = self._json("POST", "/jobs/batch", body={"jobs": [dict(j) for j in jobs]}, headers=headers)
        return list(reply["jobs"])

    def get(self, job_id: str, wait: float | None = None) -> dict[str, Any]:
        """The job; with ``wait`` the server holds the request up to that many seconds until it is terminal."""
        query = {"wait": _num(wait)} if wait else None
        timeout = self.timeout + (wait or 0)
        job: dict[str, Any] = self._json("GET", f"/jobs/{_q(job_id)}", query=query, timeout=timeout)
        return job

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        interval: float = 0.5,
        *,
        raise_on_failure: bool = False,
    ) -> dict[str, Any]:
        """Wait until the job ends (or ``timeout`` seconds pass) and return it.

        What comes back: the job as a dict once it is ``succeeded``, ``failed`` or ``cancelled`` — a failed
        job is *returned*, not raised: look at ``job["status"]`` and ``job["error"]`` (``type``, ``message``,
        ``traceback``). When ``timeout`` passes first, the job as it is then (``queued`` or ``running``; it
        goes on running). With ``raise_on_failure=True`` only a succeeded job is returned: a failed or
        cancelled one raises :class:`JobFailed` and a timeout :class:`WaitTimeout`, both carrying ``job``.

        Uses the server's long-poll; with ``on_update`` it asks every ``interval`` seconds so the callback
        sees progress as it happens (no sleep between requests: each one waits on the server). An API
        restart or Redis failover (connection errors, 502/503/504) is ridden out for ``outage_tolerance``
        seconds; other errors raise :class:`JobsAPIError` (e.g. 404 for an unknown job).
        """
        job = self._wait(job_id, timeout, on_update, interval)
        if raise_on_failure:
            if job["status"] in ("failed", "cancelled"):
                raise JobFailed(job)
            if job["status"] not in TERMINAL_STATUSES:
                raise WaitTimeout(job, timeout or 0.0)
        return job

    def _wait(
        self,
        job_id: str,
        timeout: float | None,
        on_update: Callable[[dict[str, Any]], None] | None,
        interval: float,
    ) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        outage_started: float | None = None
        while True:
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL_STATUSES:
                return job
            step = interval if on_update is not None else MAX_SERVER_WAIT / 2
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return job
                step = min(step, remaining)
            try:
                job = self.get(job_id, wait=max(step, 0.01))
                outage_started = None
            except (JobsConnectionError, JobsAPIError) as e:
                # An API pod restarting or Redis failing over must not end a wait: retry for a while.
                if isinstance(e, JobsAPIError) and e.status not in RETRYABLE_STATUSES:
                    raise
                now = time.monotonic()
                outage_started = outage_started or now
                if now - outage_started > self.outage_tolerance:
                    raise
                time.sleep(min(1.0, max(0.0, (deadline or now + 1) - now)))

    def result(self, job_id: str) -> tuple[bytes, str]:
        """The result of a succeeded job as (bytes, media type); 409/410/404 raise :class:`JobsAPIError`."""
        _, headers, raw = self.request("GET", f"/jobs/{_q(job_id)}/result")
        return raw, headers.get("content-type", "application/octet-stream")

    def result_json(self, job_id: str) -> Any:
        """The result of a succeeded job, decoded from JSON."""
        raw, _ = self.result(job_id)
        return json.loads(raw)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel; returns the job (``cancelled``, or ``running`` when a cancel was requested)."""
        job: dict[str, Any] = self._json("DELETE", f"/jobs/{_q(job_id)}")
        return job

    def retry(self, job_id: str) -> dict[str, Any]:
        """Queue a failed or cancelled job again."""
        job: dict[str, Any] = self._json("POST", f"/jobs/{_q(job_id)}/retry")
        return job

    def list(
        self,
        *,
        status: str | None = None,
        task: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page: ``{"jobs": [...], "next_cursor": ...}`` (newest first)."""
        page: dict[str, Any] = self._json(
            "GET", "/jobs", query={"status": status, "task": task, "limit": limit, "cursor": cursor}
        )
        return page

    def iter_jobs(
        self, *, status: str | None = None, task: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every job, newest first, following ``next_cursor``."""
        cursor = None
        while True:
            page = self.list(status=status, task=task, limit=page_size, cursor=cursor)
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # ------------------------------------------------------------------ queues
    def queues(self) -> builtins.list[dict[str, Any]]:
        """Every queue with its statistics (waiting by priority, running, paused, cap, workers, ...)."""
        return list(self._json("GET", "/queues")["queues"])

    def queue(self, name: str) -> dict[str, Any]:
        """One queue's statistics."""
        info: dict[str, Any] = self._json("GET", f"/queues/{_q(name)}")
        return info

    def pause_queue(self, name: str) -> dict[str, Any]:
        """Pause a queue (admin key): it accepts jobs but no worker starts them. Returns the queue."""
        info: dict[str, Any] = self._json("POST", f"/queues/{_q(name)}/pause")
        return info

    def resume_queue(self, name: str) -> dict[str, Any]:
        """Resume a paused queue (admin key). Returns the queue."""
        info: dict[str, Any] = self._json("POST", f"/queues/{_q(name)}/resume")
        return info

    def set_queue_cap(self, name: str, cap: int | None) -> dict[str, Any]:
        """At most ``cap`` of the queue's jobs run at once, cluster-wide; ``None`` removes the cap (admin key)."""
        info: dict[str, Any] = self._json("PUT", f"/queues/{_q(name)}/cap", body={"cap": cap})
        return info

    # ------------------------------------------------------------------ schedules
    def put_schedule(
        self, name: str, task: str, cron: str, params: Mapping[str, Any] | None = None, **options: Any
    ) -> dict[str, Any]:
        """Create or replace schedule ``name``; ``options``: timezone, priority, catchup (skip|one|all),
        catchup_window, overlap (allow|skip), max_attempts, timeout, paused."""
        body = {"task": task, "cron": cron, "params": dict(params or {}),
                **{k: v for k, v in options.items() if v is not None}}
        sched: dict[str, Any] = self._json("PUT", f"/schedules/{_q(name)}", body=body)
        return sched

    def schedule(self, name: str) -> dict[str, Any]:
        """One schedule (with its next run times and last fired tick)."""
        sched: dict[str, Any] = self._json("GET", f"/schedules/{_q(name)}")
        return sched

    def schedules(self) -> builtins.list[dict[str, Any]]:
        """Every schedule of the caller's tenant."""
        return list(self._json("GET", "/schedules")["schedules"])

    def delete_schedule(self, name: str) -> None:
        """Delete a schedule (the jobs it created stay)."""
        self.request("DELETE", f"/schedules/{_q(name)}")

    def pause_schedule(self, name: str) -> dict[str, Any]:
        """Pause a schedule."""
        sched: dict[str, Any] = self._json("POST", f"/schedules/{_q(name)}/pause")
        return sched

    def resume_schedule(self, name: str) -> dict[str, Any]:
        """Resume a schedule from now."""
        sched: dict[str, Any] = self._json("POST", f"/schedules/{_q(name)}/resume")
        return sched

    # ------------------------------------------------------------------ workflows
    def submit_workflow(
        self, nodes: builtins.list[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Submit a DAG atomically: ``nodes`` of ``{name, task, params?, callback_url?, depends_on?: [name |
        job id | {node|job, on_failure}]}``; returns the workflow with every node's job id and status. With
        ``idempotency_key``, a repeat (a retry after a lost answer) returns the first workflow."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        wf: dict[str, Any] = self._json("POST", "/workflows", body={"nodes": list(nodes)}, headers=headers)
        return wf

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """A workflow: its status and every node's."""
        wf: dict[str, Any] = self._json("GET", f"/workflows/{_q(workflow_id)}")
        return wf

    def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Cancel every unfinished node of a workflow."""
        wf: dict[str, Any] = self._json("DELETE", f"/workflows/{_q(workflow_id)}")
        return wf

    # ------------------------------------------------------------------ webhooks
    def put_webhook_subscription(
        self, url: str, *, statuses: Sequence[str] | None = None, tasks: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Create or replace the tenant's webhook subscription (operator key): every terminal transition of
        its jobs that the filters take is POSTed, signed, to ``url`` (``statuses``: some of succeeded,
        failed, cancelled; ``tasks``: task names; None = all). It applies to transitions after this call."""
        body: dict[str, Any] = {"url": url}
        if statuses is not None:
            body["statuses"] = list(statuses)
        if tasks is not None:
            body["tasks"] = list(tasks)
        sub: dict[str, Any] = self._json("PUT", "/webhooks/subscription", body=body)
        return sub

    def webhook_subscription(self) -> dict[str, Any] | None:
        """The tenant's webhook subscription, or None when it has none."""
        try:
            sub: dict[str, Any] = self._json("GET", "/webhooks/subscription")
        except JobsAPIError as e:
            if e.status == 404:
                return None
            raise
        return sub

    def delete_webhook_subscription(self) -> None:
        """Remove the tenant's subscription (operator key); :class:`JobsAPIError` 404 when there is none.
        Events already recorded for it are still delivered."""
        self.request("DELETE", "/webhooks/subscription")

    def rotate_webhook_secret(self) -> dict[str, Any]:
        """A new signing secret for the tenant (admin key): ``{"secret": "whsec_...",
        "previous_valid_for_seconds"}``; the replaced one keeps signing (a second signature) that long."""
        out: dict[str, Any] = self._json("POST", "/webhooks/secret/rotate")
        return out

    def webhook_deliveries(self, job_id: str) -> dict[str, Any]:
        """A job's webhook deliveries: ``{"callback_url", "attempts": [{"event", "destination", "status_code",
        "error", "at"}], "delivered", "delivered_to"}`` (the latest 20 attempts; empty when the job has no
        callback_url and no subscription event of it was tried yet)."""
        job = self.get(job_id)
        hook: dict[str, Any] = job.get("webhook") or {"callback_url": None, "attempts": [], "delivered": False,
                                                      "delivered_to": []}
        return hook

    # ------------------------------------------------------------------ audit
    def audit(
        self,
        *,
        action: str | None = None,
        target: str | None = None,
        outcome: str | None = None,
        via: str | None = None,
        tenant: str | None = None,
        since: str | datetime | None = None,
        until: str | datetime | None = None,
        limit: int | None = None,
        before: str | None = None,
    ) -> dict[str, Any]:
        """One page of the audit log, newest first: ``{"entries": [...], "next": cursor | None}``.

        Filters are those of ``GET /audit``: ``action`` exact or a prefix ending in ``.`` (``"queue."``),
        ``target`` (``"job:<id>"``), ``outcome`` (ok, denied, failed, started, limited), ``via`` (api,
        console), ``tenant`` (admin keys; others always read their own tenant), ``since``/``until`` (RFC 3339
        text, or a datetime: a naive one is taken as UTC), ``limit`` 1-500; pass ``next`` as ``before`` for
        the older page. A page examines at most 5,000 entries, so a selective filter may give a short page
        that still has a ``next``."""
        query = {"action": action, "target": target, "outcome": outcome, "via": via, "tenant": tenant,
                 "since": _rfc3339(since), "until": _rfc3339(until), "limit": limit, "before": before}
        page: dict[str, Any] = self._json("GET", "/audit", query=query)
        return page

    def iter_audit(self, *, page_size: int = 100, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every audit entry matching ``filters`` (the keywords of :meth:`audit`), newest first, following
        ``next`` to the end of the log."""
        before = filters.pop("before", None)
        while True:
            page = self.audit(limit=page_size, before=before, **filters)
            yield from page["entries"]
            before = page.get("next")
            if not before:
                return

    # ------------------------------------------------------------------ tasks and ops
    def tasks(self) -> builtins.list[dict[str, Any]]:
        """The tasks the workers published."""
        return list(self._json("GET", "/tasks")["tasks"])

    def task(self, name: str) -> dict[str, Any]:
        """One task."""
        info: dict[str, Any] = self._json("GET", f"/tasks/{_q(name)}")
        return info

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200."""
        try:
            self.request("GET", "/readyz", timeout=5)
        except JobsClientError:
            return False
        return True


def _base_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JobsConfigError(f"JOBS_URL (or --url / base_url) must be an http:// or https:// URL, got {url!r}")
    return url.strip().rstrip("/")


def _api_key(key: str | None) -> str | None:
    if key is not None and not _PRINTABLE_ASCII.match(key):
        # never echo the key: it is a secret
        raise JobsConfigError(
            "JOBS_API_KEY (or --api-key / api_key) must be printable ASCII: no control characters or newline"
        )
    return key


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def _num(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


def _rfc3339(when: str | datetime | None) -> str | None:
    if when is None or isinstance(when, str):
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.isoformat().replace("+00:00", "Z")
