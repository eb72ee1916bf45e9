"""The WSGI fast path of ``POST /jobs`` (``jobs_api.fast_submit``) answers exactly as the Flask view does.

Two apps side by side on the same Redis, each on its own namespace of the same length: one with the fast
path (the default), one with ``JOBS_FAST_SUBMIT`` off (Flask alone). Every request of a corpus of valid and
invalid submissions goes to both in the same order; status, headers (in order; the generated request id,
job ids and times normalized), body, the change of every request and submission counter of /metrics and
the log records it wrote (with the request id the log filter adds) must be equal. Each request also says
which path must answer it on the fast app, so the corpus cannot silently pass by falling through to Flask.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import redis
from flask.testing import FlaskClient
from jobs_api.fast_submit import FastSubmit
from jobs_api.logs import RequestContextFilter
from jobs_core.config import Settings, load_api_keys
from jobs_core.model import TaskInfo
from jobs_core.store import JobStore
from prometheus_client import REGISTRY

from api.conftest import TASKS, make_app
from api.stack import free_port
from api.test_prefer_wait import Worker

OPERATOR = "alice-operator-0123456789"
VIEWER = "alice-viewer-0123456789"
ADMIN = "ops-admin-0123456789"
KEYS = f"alice:{OPERATOR},alice:{VIEWER}:viewer,ops:{ADMIN}:admin"
#: A task whose published params schema cannot be used (POST /jobs: 503 task-unavailable).
BROKEN = TaskInfo("broken", "Its schema has a regex the engine refuses.",
                  {"type": "object", "properties": {"x": {"type": "string", "pattern": "(unclosed"}}})
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_COUNTED = ("jobs_api_submissions_total", "jobs_api_request_duration_seconds_count")


@dataclass
class Req:
    """One request of the corpus and the path that must answer it on the fast app."""

    name: str
    body: Any = None  # JSON-encoded unless bytes
    key: str | None = OPERATOR
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = "application/json"
    path: str = "fast"  # or "flask": handed over untouched
    setup: Callable[[Side], None] | None = None
    environ: dict[str, str] = field(default_factory=dict)


class Side:
    """One app (fast path on or off) on its own namespace, with a count of requests handed to Flask."""

    def __init__(self, settings: Settings, fast: bool) -> None:
        self.ns = f"f{uuid.uuid4().hex[:10]}"
        self.settings = dataclasses.replace(settings, key_prefix=self.ns, queue=self.ns, fast_submit=fast)
        self.store = JobStore.from_settings(self.settings)
        self.store.publish_tasks([*TASKS, BROKEN])
        self.app = make_app(self.settings, self.store)
        self.client: FlaskClient = self.app.test_client()
        self.handed_over = 0
        self.fast = next((w for w in (self.app.wsgi_app, getattr(self.app.wsgi_app, "app", None))
                          if isinstance(w, FastSubmit)), None)
        assert (self.fast is not None) == fast
        if self.fast is not None:
            flask_wsgi = self.fast.flask

            def counted(environ: dict[str, Any], start_response: Any) -> Any:
                self.handed_over += 1
                return flask_wsgi(environ, start_response)

            self.fast.flask = counted

    def cleanup(self) -> None:
        client = redis.Redis.from_url(self.settings.redis_url)
        keys = [*client.scan_iter(f"{self.ns}:*", count=1000), *client.scan_iter(f"hotqueue:{self.ns}*", count=1000)]
        if keys:
            client.delete(*keys)

    def send(self, req: Req, caplog: pytest.LogCaptureFixture) -> tuple[Any, ...]:
        """The request's normalized answer, metric changes and log records."""
        if req.setup is not None:
            req.setup(self)
        data = req.body if isinstance(req.body, bytes) or req.body is None else orjson.dumps(req.body)
        headers = dict(req.headers)
        if req.key is not None:
            headers["Authorization"] = f"Bearer {req.key}"
        before = _counters()
        handed_over = self.handed_over
        caplog.clear()
        resp = self.client.open("/jobs", method="POST", data=data, headers=headers, content_type=req.content_type,
                                environ_overrides={"REMOTE_ADDR": "10.1.2.3", **req.environ})
        records = [self._record(r, resp.headers["X-Request-ID"]) for r in caplog.records]
        if self.fast is not None:
            assert self.handed_over - handed_over == (req.path == "flask"), f"{req.name}: not on the {req.path} path"
        body = resp.get_data()
        assert resp.headers["Content-Length"] == str(len(body))
        sent_id = req.headers.get("X-Request-ID")
        out_headers = []
        for name, value in resp.headers.items():
            if name == "Content-Length":
                value = "<n>"
            elif name == "X-Request-ID" and value != sent_id:  # none sent, or not a usable one
                assert re.fullmatch(r"[0-9a-f]{32}", value), value
                value = "<generated>"
            out_headers.append((name, self._norm(value)))
        return resp.status, out_headers, self._norm(body.decode()), _changed(before, _counters()), records

    def _norm(self, text: str) -> str:
        return _TIME.sub("<time>", _UUID.sub("<id>", text.replace(self.ns, "<ns>")))

    def _record(self, r: logging.LogRecord, request_id: str) -> tuple[Any, ...]:
        extra = {k: self._norm(str(v)) for k, v in vars(r).items()
                 if k not in _STANDARD and k not in ("request_id", "trace_id", "span_id")}
        return r.name, r.levelname, self._norm(r.getMessage()), sorted(extra.items()), \
            getattr(r, "request_id", None) == request_id, r.exc_info is not None


_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _counters() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in REGISTRY.collect() for s in metric.samples if s.name in _COUNTED}


def _changed(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


@pytest.fixture
def sides(settings: Settings) -> Callable[..., tuple[Side, Side]]:
    made: list[Side] = []

    def make(**overrides: Any) -> tuple[Side, Side]:
        overrides.setdefault("api_keys", load_api_keys({"JOBS_API_KEYS": KEYS}))
        base = dataclasses.replace(settings, **overrides)
        pair = Side(base, fast=True), Side(base, fast=False)
        made.extend(pair)
        return pair

    yield make  # type: ignore[misc]
    for side in made:
        side.cleanup()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="jobs_api")
    request_ids = RequestContextFilter()
    caplog.handler.addFilter(request_ids)
    yield caplog
    caplog.handler.removeFilter(request_ids)


def _same(pair: tuple[Side, Side], corpus: list[Req], caplog: pytest.LogCaptureFixture) -> list[int]:
    """Send the corpus to both apps, assert equal answers; the status codes."""
    fast, flask = pair
    statuses = []
    for req in corpus:
        got, want = fast.send(req, caplog), flask.send(req, caplog)
        assert got == want, req.name
        statuses.append(int(got[0].split()[0]))
    return statuses


def _deep(n: int) -> bytes:
    return b'{"task": "echo", "params": ' + b'{"a": ' * n + b"1" + b"}" * n + b"}"


CORPUS = [
    Req("valid", {"task": "echo", "params": {"n": 1}}),
    Req("task defaults", {"task": "sleep"}),
    Req("every option", {"task": "primes", "params": {"limit": 10}, "priority": 9, "max_attempts": 2,
                         "timeout": 1.5}),
    Req("delay", {"task": "echo", "delay": 30}),
    Req("callback_url", {"task": "echo", "callback_url": "https://example.com/hook"}),
    Req("unsafe callback_url", {"task": "echo", "callback_url": "http://127.0.0.1/hook"}),
    Req("depends_on", {"task": "echo", "depends_on": ["00000000-0000-4000-8000-000000000000"]}, path="flask"),
    Req("names a queue", {"task": "echo", "queue": "other"}),
    Req("priority out of range", {"task": "echo", "priority": 10}),
    Req("unknown task", {"task": "nope"}),
    Req("params schema", {"task": "primes", "params": {"limit": "x", "extra": 1}}),
    Req("task cannot take jobs", {"task": "broken", "params": {"x": "y"}}),
    Req("params too deep to store", _deep(300)),
    Req("not an object", [1, 2]),
    Req("null", b"null"),
    Req("malformed JSON", b'{"task": '),
    Req("empty body", b"", environ={"CONTENT_LENGTH": "0"}),
    Req("no Content-Length", b"", path="flask"),  # the test client sends none for an empty body
    Req("vendor JSON with charset", {"task": "echo"}, content_type="application/vnd.jobs+json; charset=utf-8"),
    Req("JSON upper case", {"task": "echo"}, content_type="Application/JSON"),
    Req("text/plain", b'{"task": "echo"}', content_type="text/plain", path="flask"),
    Req("no content type", b'{"task": "echo"}', content_type=None, path="flask"),
    Req("too large", {"task": "echo", "params": {"s": "x" * 5000}}, path="flask"),
    Req("no key", {"task": "echo"}, key=None),
    Req("wrong scheme", {"task": "echo"}, key=None, headers={"Authorization": f"Basic {OPERATOR}"}),
    Req("empty bearer", {"task": "echo"}, key=None, headers={"Authorization": "Bearer   "}),
    Req("unknown key", {"task": "echo"}, key="not-a-key-at-all"),
    Req("unknown key, bad body", b"{", key="not-a-key-at-all"),
    Req("viewer role", {"task": "echo"}, key=VIEWER),
    Req("admin role", {"task": "echo"}, key=ADMIN),
    Req("idempotent first", {"task": "echo", "params": {"i": 1}}, headers={"Idempotency-Key": "k-1"}),
    Req("idempotent replay", {"task": "echo", "params": {"i": 1}}, headers={"Idempotency-Key": "k-1"}),
    Req("idempotency conflict", {"task": "echo", "params": {"i": 2}}, headers={"Idempotency-Key": "k-1"}),
    Req("bad idempotency key", {"task": "echo"}, headers={"Idempotency-Key": "has space"}),
    Req("bad idempotency key, bad body", b"[", headers={"Idempotency-Key": "has space"}),
    Req("request id kept", {"task": "echo"}, headers={"X-Request-ID": "client-id.42"}),
    Req("request id replaced", {"task": "echo"}, headers={"X-Request-ID": "bad id!"}),
    Req("Prefer: wait passes", {"task": "echo"}, headers={"Prefer": "wait=1"}),  # held 1 s, then 202
    Req("Prefer, ignored", {"task": "echo"}, headers={"Prefer": "respond-async"}),
    Req("cookie", {"task": "echo"}, setup=lambda side: side.client.set_cookie("jobs_console", "x"), path="flask"),
    Req("cookie gone", {"task": "echo"}, setup=lambda side: side.client.delete_cookie("jobs_console")),
    Req("query string", {"task": "echo"}, environ={"QUERY_STRING": "x=1"}, path="flask"),
    Req("body shorter than Content-Length", b'{"task": "echo"}', environ={"CONTENT_LENGTH": "40"}, path="flask"),
    Req("paused queue", {"task": "echo"}, setup=lambda side: side.store.pause_queue(side.ns)),
]


def test_the_corpus_is_answered_alike_with_and_without_the_fast_path(
    sides: Callable[..., tuple[Side, Side]], logs: pytest.LogCaptureFixture
) -> None:
    statuses = _same(sides(max_body_bytes=4096), CORPUS, logs)
    assert set(statuses) == {202, 400, 401, 403, 413, 415, 422, 503}  # every answer POST /jobs gives but 429


def test_caps_are_the_same_429(sides: Callable[..., tuple[Side, Side]], logs: pytest.LogCaptureFixture) -> None:
    corpus = [Req(f"job {i}", {"task": "echo", "params": {"i": i}}) for i in range(3)]
    corpus.append(Req("other tenant", {"task": "echo"}, key=ADMIN))
    assert _same(sides(max_pending_per_tenant=2), corpus, logs) == [202, 202, 429, 202]
    assert _same(sides(max_pending=1), corpus, logs) == [202, 429, 429, 429]


def test_the_failed_key_limit_is_the_same(sides: Callable[..., tuple[Side, Side]],
                                          logs: pytest.LogCaptureFixture) -> None:
    corpus = [Req(f"wrong key {i}", {"task": "echo"}, key=f"guess-{i}-000000") for i in range(3)]
    corpus += [Req("right key, blocked address", {"task": "echo"}),
               Req("right key, other address", {"task": "echo"}, environ={"REMOTE_ADDR": "10.9.9.9"})]
    assert _same(sides(auth_failure_limit=2), corpus, logs) == [401, 401, 429, 429, 202]
    # behind a proxy the limit counts the address it reports: the fast path sits inside ProxyFix
    proxied = [Req(f"wrong key {i} via proxy", {"task": "echo"}, key=f"other-{i}-000000",
                   headers={"X-Forwarded-For": "10.7.7.7"}) for i in range(3)]
    proxied += [Req("right key, blocked client", {"task": "echo"}, headers={"X-Forwarded-For": "10.7.7.7"}),
                Req("right key, other client", {"task": "echo"}, headers={"X-Forwarded-For": "10.7.7.8"})]
    pair = sides(auth_failure_limit=2, trusted_proxy_hops=1)
    assert isinstance(pair[0].app.wsgi_app.app, FastSubmit)  # type: ignore[attr-defined]
    assert _same(pair, proxied, logs) == [401, 401, 429, 429, 202]


def test_auth_off_and_redis_down_are_the_same(settings: Settings, sides: Callable[..., tuple[Side, Side]],
                                              logs: pytest.LogCaptureFixture) -> None:
    corpus = [Req("anonymous", {"task": "echo"}, key=None), Req("any key is ignored", {"task": "echo"}, key="x"),
              Req("invalid", {"task": "nope"}, key=None)]
    _same(sides(api_keys={}), corpus, logs)
    down = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", api_keys={})
    pair = []
    for fast_on in (True, False):  # no Redis to publish to: built by hand
        side = object.__new__(Side)
        side.ns, side.settings, side.handed_over = "f0000000000", dataclasses.replace(down, fast_submit=fast_on), 0
        side.store = JobStore.from_settings(side.settings)
        side.app = make_app(side.settings, side.store)
        side.client = side.app.test_client()
        side.fast = side.app.wsgi_app if isinstance(side.app.wsgi_app, FastSubmit) else None
        assert (side.fast is not None) == fast_on
        pair.append(side)
    _same((pair[0], pair[1]), [Req("redis down", {"task": "echo"}, key=None)], logs)


HELD = [
    Req("held, succeeded", {"task": "echo", "params": {"n": 3}}, headers={"Prefer": "wait=10"}),
    Req("held, failed", {"task": "echo", "params": {"fail": True}}, headers={"Prefer": "wait=10"}),
    Req("held, idempotent first", {"task": "echo", "params": {"n": 4}},
        headers={"Prefer": "wait=10", "Idempotency-Key": "h-1"}),
    Req("held, idempotent replay", {"task": "echo", "params": {"n": 4}},
        headers={"Prefer": "wait=10", "Idempotency-Key": "h-1"}),
    Req("held, RFC spelling", {"task": "echo", "params": {"n": 5}},
        headers={"Prefer": 'handling=lenient, WAIT = "10"; x=y', "X-Request-ID": "held-5"}),
    Req("held, invalid", {"task": "nope"}, headers={"Prefer": "wait=10"}),
    Req("held, viewer", {"task": "echo"}, key=VIEWER, headers={"Prefer": "wait=10"}),
    Req("wait=0", {"task": "echo", "params": {"n": 6}}, headers={"Prefer": "wait=0"}),
    Req("held, workflow node", {"task": "echo", "depends_on": ["00000000-0000-4000-8000-000000000000"]},
        headers={"Prefer": "wait=10"}, path="flask"),
]


def test_held_submissions_are_answered_alike(sides: Callable[..., tuple[Side, Side]],
                                             logs: pytest.LogCaptureFixture) -> None:
    """``Prefer: wait`` (profile 23: answered by the fast path too): the 200 with the finished job and its
    result inline, a failed job, an idempotent replay held, errors, and a wait the path must not hold."""
    pair = sides()
    workers = [Worker(side.store) for side in pair]
    try:
        statuses = _same(pair, HELD, logs)
    finally:
        for w in workers:
            w.close()
    assert statuses == [200, 200, 200, 200, 200, 422, 403, 202, 422]  # the node names no existing job
