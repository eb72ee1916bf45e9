"""``Prefer: wait=N`` (RFC 7240) on ``POST /jobs``: submit and get the finished job in one request.

The request is held (at most ``JOBS_PREFER_WAIT_MAX_SECONDS``, default 60) until the job ends: the job is
queued with this thread's reply channel (``JobStore.enqueue(reply=True)``), so the worker's finish publishes
the ended job, record and result, straight to the thread holding the request (no read after the
submission; issue 16's round trip). It is then answered ``200`` with the finished job, and its result
inline (``"result"``) when it succeeded with a JSON result; other results stay at ``links.result``. When the
wait passes first, the answer is the usual ``202`` with the job as it then is. Both carry
``Preference-Applied: wait``.

A held submission takes one of the process's long-poll slots (``jobs_api.slots.held``: all threads but
two, shared with ``GET /jobs/<id>?wait`` and ``GET /events``); with none free the submission is answered at
once, ``202`` without ``Preference-Applied``, exactly as without the header. A ``Prefer`` header this server
cannot honour — no ``wait``, a value that is not RFC 7240's ``delta-seconds`` (digits), ``wait=0``, or
``respond-async`` also asked for — is ignored, as RFC 7240 section 2 requires of preferences (never 400).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

import orjson
from jobs_core.errors import ResultExpired
from jobs_core.model import Job, JobStatus, Result
from jobs_core.store import JobStore

from jobs_api.lifecycle import SHUTTING_DOWN

#: One preference of a ``Prefer`` header: ``token [BWS "=" BWS word] *(OWS ";" [OWS parameter])``.
_PREFERENCE = re.compile(r'^\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("[^"]*"|[^;\s]*))?\s*(?:;.*)?$')
#: Longest single wait on Redis within a held request: how fast a stopping process lets go of it.
SLICE_SECONDS = 2.0
#: Header sent when the server held the request as asked (RFC 7240 section 3).
APPLIED = {"Preference-Applied": "wait"}


def preferred_wait(headers: Iterable[str], maximum: float) -> float:
    """Seconds a request's ``Prefer: wait=N`` asks to hold it, cut to ``maximum``; 0 when absent, not
    honoured or malformed (ignored, RFC 7240 section 2). Only the first ``wait`` counts (section 2).
    ``headers``: the request's ``Prefer`` header values (the WSGI environ's one, repeated headers joined
    with commas, is the same list of preferences)."""
    wait: float | None = None
    async_asked = False
    for header in headers:
        for item in header.split(","):
            m = _PREFERENCE.match(item)
            if m is None:
                continue
            name = m.group(1).lower()
            if name == "respond-async":
                async_asked = True
            elif name == "wait" and wait is None:
                value = (m.group(2) or "").strip('"')
                wait = float(value) if value.isascii() and value.isdigit() and len(value) <= 9 else 0.0
    if async_asked or not wait:
        return 0.0
    return min(wait, maximum)


def wait_for_end(store: JobStore, job: Job, seconds: float) -> tuple[Job, Result | None]:
    """The job once it ended within ``seconds`` (with its result when it succeeded), else as it then is
    (and None). Waits in slices, so a stopping process answers within one (see lifecycle.py)."""
    deadline = time.monotonic() + seconds
    result: Result | None = None
    try:
        while not job.is_terminal and not SHUTTING_DOWN.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                job, result = store.wait_result(job.id, min(remaining, SLICE_SECONDS), owner=job.owner)
            except ResultExpired:  # succeeded, result already gone (a TTL shorter than the wait): link only
                return store.get(job.id, owner=job.owner), None
    finally:
        # this thread serves other requests next: a job it no longer waits for is not kept for it
        store.forget_reply(job.id)
    if result is None and job.status is JobStatus.SUCCEEDED:  # ended before the wait (an idempotent repeat)
        try:
            result = store.get_result(job.id, owner=job.owner)
        except ResultExpired:
            pass
    return job, result


def finished_body(body: dict[str, Any], job: Job, result: Result | None) -> bytes:
    """The JSON answer of a held submission: the job's ``body``, plus its result inline as ``"result"`` when
    it succeeded with a JSON result (else the result stays at ``links.result``)."""
    if result is not None and job.status is JobStatus.SUCCEEDED and result.media_type == "application/json":
        try:
            body = {**body, "result": orjson.loads(result.data)}
        except orjson.JSONDecodeError:
            pass  # stored as JSON but is not: served as it is by GET /jobs/<id>/result
    return orjson.dumps(body) + b"\n"
