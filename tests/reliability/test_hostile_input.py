"""Scenario 5, hostile input: schemathesis over /openapi.json (auth on) plus hand-written nasty requests.

0 server errors and 0 responses that break the documented schema; every hand-written bad request gets a
precise 4xx and changes nothing stored (the namespace is compared key by key before and after, with no
worker running). The console is driven as a logged-in browser too (reliability/hostile_console.py: bad
forms, missing or forged CSRF, oversized fields, roles too small, other tenants' ids), and must answer with
its own error page. Every route the app serves (its url_map) must meet at least one hostile request, hand-
written or generated, so a new route that joins no case fails the scenario. A few slow clients trickling
their requests do not stop others from being served.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jobs_core.keys import AUDIT_STREAM_MAXLEN

from reliability import fuzz, hostile_console, report, routes
from reliability.console import login
from reliability.rawhttp import exchange, slow_request, trickle
from reliability.stack import Stack

GENERATED = 1200 if report.FULL else 200
SLOW_CLIENTS = 4
LONG_POLLS = 24  # more than WEB_CONCURRENCY x JOBS_API_THREADS (2 x 8)
LONG_POLL_SECONDS = 4.0
SLOW_SECONDS = 6.0 if report.FULL else 3.0
MiB = 1024 * 1024


#: Routes no request can be hostile to: they read nothing from the request (no path part, query or body).
HOSTILE_EXEMPT = {("GET", "/ui/login"): "the login form: reads only ?next=, which never leaves /ui "
                                         "(tests/console); its POST is a case",
                  ("GET", "/openapi.json"): "a fixed document; the generated cases are read from it",
                  ("GET", "/docs/init.js"): "a fixed script of the docs page"}
#: The routes the raw (byte for byte) cases send to.
_RAW_ROUTES = [("POST", "/jobs"), ("POST", "/jobs/batch"), ("POST", "/ui/login"), ("GET", "/jobs")]


def _nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def _cases(job: str, queue: str, admin_key: str) -> list[tuple[str, str, str, Any, dict[str, str], set[int]]]:
    """(name, method, path, body (bytes: raw, else JSON), headers, acceptable statuses) of rejected requests.

    They are sent with tenant alpha's (operator) key unless they carry their own Authorization header; the
    queue changes are sent as the admin (``admin_key``), so they meet validation, not just the role check.
    """
    j = "application/json"
    bad_ids = ["*", "%2A", "..%2F..%2Fetc%2Fpasswd", "..", "[a-z]*", "?*", "job:*", "%00", "%ff", "%25",
               job.upper(), job + "%00", job + "x", "{" + job + "}", "hotqueue:jobs", str(uuid.UUID(int=0))]
    cases: list[tuple[str, str, str, Any, dict[str, str], set[int]]] = []
    for bad in bad_ids:
        for method, suffix in (("GET", ""), ("GET", "/result"), ("DELETE", ""), ("POST", "/retry"),
                               ("GET", "?wait=1")):
            cases.append((f"id {bad!r} {method}{suffix}", method, f"/jobs/{bad}{suffix}", None, {}, {404, 400}))
    for bad in ("*", "..%2F..", "%00", "%ff", "sleep%00", "x" * 300):
        cases.append((f"task name {bad[:20]!r}", "GET", f"/tasks/{bad}", None, {}, {404}))
    bodies: list[tuple[str, Any, set[int]]] = [
        ("nested 300 (params)", b'{"task":"echo","params":{"a":' + _nested(300).encode() + b"}}", {422}),
        ("nested objects 600", b'{"task":"echo","params":' + ('{"a":' * 600 + "1" + "}" * 600).encode() + b"}", {422}),
        ("nested 5000", _nested(5000).encode(), {400}),
        ("900 KiB param", {"task": "sleep", "params": {"seconds": 1, "x": "y" * 900_000}}, {422}),
        ("100k-element array", {"task": "sleep", "params": {"seconds": list(range(100_000))}}, {422}),
        ("body is an array", [], {422}), ("body is a string", "jobs", {422}), ("body is null", None, {422}),
        ("body is a number", 1, {422}), ("empty body", b"", {400}), ("truncated JSON", b'{"task": "sle', {400}),
        ("JSON with trailing junk", b'{"task":"sleep"} x', {400}),
        ("NaN literal", b'{"task":"sleep","params":{"seconds":NaN}}', {400}),
        ("invalid UTF-8", b'{"task":"sleep","params":{"s":"\xff\xfe"}}', {400}),
        ("lone surrogate", b'{"task":"sleep","params":{"s":"\\ud800"}}', {400}),
        ("UTF-16 body", '{"task":"sleep"}'.encode("utf-16"), {400}),
        ("NUL in task", {"task": "sle\u0000ep", "params": {}}, {422}),
        ("control chars in task", {"task": "\u0001\u001b[31m", "params": {}}, {422}),
        ("NUL in params", {"task": "sleep", "params": {"seconds": "\u0000"}}, {422}),
        ("task as a path", {"task": "../../etc/passwd", "params": {}}, {422}),
        ("task as a pattern", {"task": "*", "params": {}}, {422}),
        ("unknown field", {"task": "sleep", "params": {}, "owner": "beta"}, {422}),
    ]
    for field, values in (("task", [1, None, [], {}, True]), ("params", [[], "x", 1, None, True]),
                          ("max_attempts", ["3", 1.5, -1, 0, True, None, 10**30]),
                          ("timeout", ["x", -1, True, 0, 1e308]),
                          ("delay", ["1", -5, True, 1e308])):
        for value in values:
            body = {"task": "sleep", "params": {"seconds": 1}, field: value}
            bodies.append((f"{field}={json.dumps(value)[:20]}", body, {422}))
    for name, body, ok in bodies:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        cases.append((name, "POST", "/jobs", raw, {"Content-Type": j}, ok))
    valid = json.dumps({"task": "sleep", "params": {"seconds": 1}}).encode()
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""):
        headers = {"Content-Type": ctype} if ctype else {}
        cases.append((f"content type {ctype or 'none'}", "POST", "/jobs", valid, headers, {415}))
    # Prefer: wait never changes how a bad submission is judged (422 at once, nothing stored, never held);
    # its own bad values are ignored (RFC 7240), so only an invalid body is a case here
    invalid = json.dumps({"task": "sleep", "params": {"seconds": "x"}}).encode()
    for prefer in ("wait=10", "wait=-1", "wait=abc", "wait=" + "9" * 40, "wait=1e400", "respond-async, wait=5",
                   ";;=,"):
        cases.append((f"Prefer {prefer[:16]!r} on a bad body", "POST", "/jobs", invalid,
                      {"Content-Type": j, "Prefer": prefer}, {422}))
    for key in ("", "\x01\x02", "k" * 257, "a b", "é"):
        cases.append((f"Idempotency-Key {key[:10]!r}", "POST", "/jobs", valid,
                      {"Content-Type": j, "Idempotency-Key": key}, {400}))
    for query in ("limit=abc", "limit=-1", "limit=0", "limit=201", "limit=1e3", "limit=%ff", "limit=" + "9" * 30,
                  "status=bogus", "status=%00", "cursor=abc", "cursor=%C2%B2", "cursor=-1", "cursor=1e5",
                  "cursor=" + "9" * 600, "task=" + "t" * 300):
        cases.append((f"list {query[:30]}", "GET", f"/jobs?{query}", None, {}, {400}))
    for query in ("wait=abc", "wait=-1", "wait=nan", "wait=inf", "wait=61", "wait=1e400"):
        cases.append((f"get {query}", "GET", f"/jobs/{job}?{query}", None, {}, {400}))
    for method, path in (("PUT", "/jobs"), ("PATCH", f"/jobs/{job}"), ("DELETE", "/jobs"), ("POST", "/tasks"),
                         ("PUT", f"/jobs/{job}/retry"), ("TRACE", "/jobs")):
        cases.append((f"{method} {path[:12]}", method, path, None, {}, {405}))
    cases += _schedule_cases()
    cases += _workflow_cases(job)
    cases += _webhook_cases(job)
    for auth in ("", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer *", "Bearer " + "k" * 4000, "bearer  x  y"):
        cases.append((f"Authorization {auth[:15]!r}", "GET", "/jobs", None, {"Authorization": auth}, {401}))
    cases += _batch_cases()
    cases += _queue_cases(queue, {"Authorization": f"Bearer {admin_key}"})
    cases += _console_cases(job, queue)
    for query in ("tenant=a:b", "tenant=%00", "tenant=" + "t" * 65, "tenant=**", "tenant=%2A%00"):
        cases.append((f"list {query[:30]}", "GET", f"/jobs?{query}", None, {}, {400}))
    for query in ("tenant=beta", "tenant=*", "tenant=ops"):  # alpha is an operator: another tenant is 403
        cases.append((f"list {query}", "GET", f"/jobs?{query}", None, {}, {403}))
    return cases


def _console_cases(job: str, queue: str) -> list[tuple[str, str, str, Any, dict[str, str], set[int]]]:
    """The console (/ui: a session cookie, never a bearer key, and a CSRF token) and GET /events."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases: list[tuple[str, str, str, Any, dict[str, str], set[int]]] = [
        (f"console {method} {path[:30]} without a session", method, path, b"csrf_token=x&act=cancel-filter", form,
         {401})
        for method, path in (("POST", f"/ui/jobs/{job}/cancel"), ("POST", f"/ui/jobs/{job}/retry"),
                             ("POST", "/ui/bulk/preview"), ("POST", f"/ui/queues/{queue}/pause"),
                             ("POST", "/ui/tasks/echo/run"), ("GET", "/ui/jobs?status=bogus"),
                             ("GET", f"/ui/jobs/{job}/params"), ("GET", "/ui/bulk/0123456789abcdef/status"))
    ]
    for path in ("/ui/", "/ui/workers", "/ui/tasks", "/ui/queues", "/ui/audit", "/ui/webhooks", "/ui/schedules",
                 f"/ui/jobs/{job}", f"/ui/jobs/{job}/state", f"/ui/jobs/{job}/result", "/ui/bulk/0123456789abcdef"):
        cases.append((f"console GET {path[:30]} without a session", "GET", path, None, {}, {401}))
    cases += [
        ("console logout without a session", "POST", "/ui/logout", b"csrf_token=x", form, {401}),
        ("console bulk run without a session", "POST", "/ui/bulk/0123456789abcdef/run", b"csrf_token=x", form, {401}),
        ("console rotate without a session", "POST", "/ui/webhooks/secret/rotate", b"csrf_token=x", form, {401}),
        ("console login without CSRF", "POST", "/ui/login", b"api_key=x", form, {403}),
        ("console login, forged cookie", "POST", "/ui/login", b"api_key=x&csrf_token=abc",
         {**form, "Cookie": "jobs_ui=eyJrIjoiIn0.forged.sig"}, {403}),
        ("console static traversal", "GET", "/ui/static/..%2f..%2fapp.py", None, {}, {404}),
        ("app static traversal", "GET", "/static/..%2f..%2fapp.py", None, {}, {404}),
        ("docs asset traversal", "GET", "/docs/assets/..%2f..%2fapp.py", None, {}, {404}),
        ("docs asset unknown", "GET", "/docs/assets/nope.js", None, {}, {404}),
        ("events: bad Last-Event-ID", "GET", "/events", None, {"Last-Event-ID": "0-0 x"}, {400}),
        ("events: Last-Event-ID not an id", "GET", "/events", None, {"Last-Event-ID": "$"}, {400}),
        ("events: tenant with ':'", "GET", "/events?tenant=a:b", None, {}, {400}),
        ("events: max_seconds nan", "GET", "/events?max_seconds=nan", None, {}, {400}),
    ]
    return cases


def _batch_cases() -> list[tuple[str, str, str, Any, dict[str, str], set[int]]]:
    """POST /jobs/batch bodies that must queue nothing."""
    ok_job = {"task": "sleep", "params": {"seconds": 1}}
    bodies: list[tuple[str, Any, set[int]]] = [
        ("batch: jobs missing", {}, {422}), ("batch: jobs null", {"jobs": None}, {422}),
        ("batch: jobs empty", {"jobs": []}, {422}), ("batch: jobs an object", {"jobs": ok_job}, {422}),
        ("batch: 1001 jobs", {"jobs": [ok_job] * 1001}, {422}), ("batch: body an array", [ok_job], {422}),
        ("batch: unknown field", {"jobs": [ok_job], "owner": "beta"}, {422}),
        ("batch: one job null", {"jobs": [ok_job, None]}, {422}),
        ("batch: one unknown task", {"jobs": [ok_job, {"task": "*"}]}, {422}),
        ("batch: one bad priority", {"jobs": [ok_job, {**ok_job, "priority": 10}]}, {422}),
        ("batch: one with a queue", {"jobs": [ok_job, {**ok_job, "queue": "other"}]}, {422}),
        ("batch: one NUL task", {"jobs": [ok_job, {"task": "sle\u0000ep"}]}, {422}),
        ("batch: one nested 300", {"jobs": [ok_job, {"task": "echo", "params": {"a": json.loads(_nested(300))}}]},
         {422}),
        ("batch: 900 KiB in one job", {"jobs": [ok_job, {**ok_job, "params": {"seconds": 1, "x": "y" * 900_000}}]},
         {422}),
    ]  # a batch over the body limit is a raw case: the server answers 413 and closes the connection
    cases = [(name, "POST", "/jobs/batch", json.dumps(body).encode(), {"Content-Type": "application/json"}, ok)
             for name, body, ok in bodies]
    cases.append(("batch: truncated JSON", "POST", "/jobs/batch", b'{"jobs": [', {"Content-Type": "application/json"},
                  {400}))
    cases.append(("batch: text/plain", "POST", "/jobs/batch", json.dumps({"jobs": [ok_job]}).encode(),
                  {"Content-Type": "text/plain"}, {415}))
    cases.append(("batch: bad Idempotency-Key", "POST", "/jobs/batch", json.dumps({"jobs": [ok_job]}).encode(),
                  {"Content-Type": "application/json", "Idempotency-Key": "a b"}, {400}))
    return cases


def _queue_cases(queue: str, admin: dict[str, str]) -> list[tuple[str, str, str, Any, dict[str, str], set[int]]]:
    """/queues requests that must change nothing: bad names, bad caps, wrong methods (as the admin)."""
    j = {"Content-Type": "application/json", **admin}
    cases: list[tuple[str, str, str, Any, dict[str, str], set[int]]] = []
    for bad in ("*", "%2A", "..%2F..", "..", "%00", "%ff", "a:b", "x" * 300, "hotqueue:jobs", queue + "%00",
                queue.upper(), "nope"):
        for method, suffix in (("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("PUT", "/cap")):
            body = b'{"cap": 1}' if method == "PUT" else None
            cases.append((f"queue {bad[:20]!r} {method}{suffix}", method, f"/queues/{bad}{suffix}", body, j, {404}))
    for cap in (0, -1, 100_001, "2", 1.5, True, 1e308, [1]):
        cases.append((f"cap {cap!r}"[:30], "PUT", f"/queues/{queue}/cap", json.dumps({"cap": cap}).encode(), j,
                      {422}))
    for name, raw in (("cap: no field", b"{}"), ("cap: extra field", b'{"cap": 2, "paused": true}'),
                      ("cap: array", b"[2]"), ("cap: number", b"2")):
        cases.append((name, "PUT", f"/queues/{queue}/cap", raw, j, {422}))
    cases.append(("cap: truncated", "PUT", f"/queues/{queue}/cap", b'{"cap":', j, {400}))
    cases.append(("cap: text/plain", "PUT", f"/queues/{queue}/cap", b'{"cap": 2}',
                  {**admin, "Content-Type": "text/plain"}, {415}))
    for method, path in (("DELETE", "/queues"), ("POST", "/queues"), ("GET", f"/queues/{queue}/pause"),
                         ("PUT", f"/queues/{queue}"), ("POST", f"/queues/{queue}/cap"), ("PUT", "/jobs/batch")):
        cases.append((f"{method} {path[:20]}", method, path, None, admin, {405}))
    # an operator's (alpha's own key) queue changes: refused by role, whatever the body
    for method, suffix in (("POST", "/pause"), ("POST", "/resume"), ("PUT", "/cap")):
        cases.append((f"operator {method}{suffix}", method, f"/queues/{queue}{suffix}", b'{"cap": 1}',
                      {"Content-Type": "application/json"}, {403}))
    return cases


def _schedule_cases() -> list[tuple[str, str, str, Any, dict[str, str], set[int]]]:
    """Rejected requests on /schedules: bad names, bad definitions (cron, zone, policies), wrong methods."""
    j = {"Content-Type": "application/json"}
    good = {"task": "echo", "cron": "*/5 * * * *"}
    cases: list[tuple[str, str, str, Any, dict[str, str], set[int]]] = []
    for bad in ("*", "%2A", "..%2F..", "a%2Fb", "%00", "%ff", "x" * 65, "a:b", "a%20b", "%7Bx%7D", "default%2Fx"):
        cases.append((f"schedule name {bad[:12]!r} PUT", "PUT", f"/schedules/{bad}", json.dumps(good).encode(), j,
                      {400, 404}))
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/pause"), ("POST", "/resume")):
            cases.append((f"schedule name {bad[:12]!r} {method}{suffix}", method, f"/schedules/{bad}{suffix}", None,
                          {}, {404}))
    for field, values in (("cron", ["", "61 * * * *", "* * *", "* * * * * * *", "x" * 500, 5, None, "@never",
                                    "* * * * * \u0000"]),
                          ("timezone", ["", "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "x" * 100, 1]),
                          ("task", ["", "nope", "*", None]), ("params", [[], "x"]),
                          ("catchup", ["most", "", 1]), ("catchup_window", [0, -1, 10**9, "1", True]),
                          ("overlap", ["never", None]), ("priority", [-1, 10, "5", 1.5]),
                          ("max_attempts", [0, 101]), ("timeout", [0, -1]), ("paused", ["yes", 1]),
                          ("owner", ["beta"])):
        for value in values:
            body = json.dumps({**good, field: value}).encode()
            cases.append((f"schedule {field}={json.dumps(value)[:15]}", "PUT", "/schedules/hostile", body, j, {422}))
    cases.append(("schedule body array", "PUT", "/schedules/hostile", b"[]", j, {422}))
    cases.append(("schedule truncated JSON", "PUT", "/schedules/hostile", b'{"task":', j, {400}))
    cases.append(("schedule text/plain", "PUT", "/schedules/hostile", json.dumps(good).encode(),
                  {"Content-Type": "text/plain"}, {415}))
    for method, path in (("POST", "/schedules"), ("PATCH", "/schedules/x"), ("GET", "/schedules/x/pause")):
        cases.append((f"{method} {path}", method, path, None, {}, {405}))
    return cases


def _workflow_cases(job: str) -> list[tuple[str, str, str, Any, dict[str, str], set[int]]]:
    """Rejected requests on /workflows and depends_on: cycles, unknown references, bad shapes."""
    j = {"Content-Type": "application/json"}
    a = {"name": "a", "task": "echo"}
    bodies: list[tuple[str, Any]] = [
        ("cycle", {"nodes": [{**a, "depends_on": ["b"]}, {"name": "b", "task": "echo", "depends_on": ["a"]}]}),
        ("self loop", {"nodes": [{**a, "depends_on": ["a"]}]}),
        ("unknown node", {"nodes": [{**a, "depends_on": ["zz"]}]}),
        ("unknown job", {"nodes": [{**a, "depends_on": [{"job": str(uuid.UUID(int=1))}]}]}),
        ("job id as pattern", {"nodes": [{**a, "depends_on": [{"job": "*"}]}]}),
        ("duplicate names", {"nodes": [a, a]}), ("no nodes", {"nodes": []}), ("nodes not a list", {"nodes": {}}),
        ("node without task", {"nodes": [{"name": "a"}]}), ("bad node name", {"nodes": [{**a, "name": "a:b"}]}),
        ("bad policy", {"nodes": [a, {"name": "b", "task": "echo", "depends_on": [{"node": "a", "on_failure": "x"}]}]}),
        ("node and job", {"nodes": [{**a, "depends_on": [{"node": "a", "job": job}]}]}),
        ("1001 nodes", {"nodes": [{"name": f"n{i}", "task": "echo"} for i in range(1001)]}),
        ("unknown field", {"nodes": [a], "owner": "beta"}), ("array body", []),
    ]
    cases = [(f"workflow {name}", "POST", "/workflows", json.dumps(body).encode(), j, {422}) for name, body in bodies]
    for name, deps in (("unknown", [str(uuid.UUID(int=2))]), ("not an id", ["../x"]), ("number", [1]),
                       ("bad policy", [{"job": job, "on_failure": "never"}])):
        body = json.dumps({"task": "echo", "depends_on": deps}).encode()
        cases.append((f"depends_on {name}", "POST", "/jobs", body, j, {422}))
    for bad in ("*", "..%2F..", "%00", str(uuid.UUID(int=0)), job):
        cases.append((f"workflow id {bad[:10]!r} GET", "GET", f"/workflows/{bad}", None, {}, {404}))
        cases.append((f"workflow id {bad[:10]!r} DELETE", "DELETE", f"/workflows/{bad}", None, {}, {404}))
    return cases


def _webhook_cases(job: str) -> list[tuple[str, str, str, Any, dict[str, str], set[int]]]:
    """Rejected callback URLs (shape, scheme, non-public addresses: SSRF; also on workflow nodes and the tenant
    subscription), bad subscriptions, and secret rotation by an operator."""
    j = {"Content-Type": "application/json"}
    cases: list[tuple[str, str, str, Any, dict[str, str], set[int]]] = []
    for url in ("", "ftp://example.com/", "http://example.com/", "https://10.0.0.1/", "https://169.254.169.254/x",
                "https://[::1]/", "https://[::ffff:127.0.0.1]/", "https://u:p@example.com/", "https:///x",
                "https://example.com:99999/", "https://exa mple.com/", "https://e.com/" + "x" * 3000, 5, None, ["x"]):
        body = json.dumps({"task": "echo", "callback_url": url}).encode()
        cases.append((f"callback_url {json.dumps(url)[:25]}", "POST", "/jobs", body, j, {422}))
    batch = {"jobs": [{"task": "echo", "callback_url": "https://a.example/"}, {"task": "echo"}]}
    cases.append(("batch with two callbacks", "POST", "/jobs/batch", json.dumps(batch).encode(), j, {422}))
    body = json.dumps({"task": "echo", "depends_on": [job], "callback_url": "https://10.0.0.1/"}).encode()
    cases.append(("private callback_url with depends_on", "POST", "/jobs", body, j, {422}))
    for url in ("ftp://example.com/", "https://169.254.169.254/x", 5):
        node = {"name": "a", "task": "echo", "callback_url": url}
        cases.append((f"workflow node callback_url {json.dumps(url)[:20]}", "POST", "/workflows",
                      json.dumps({"nodes": [node]}).encode(), j, {422}))
    # the tenant subscription: its url passes the same SSRF guard; bad filters; none yet: 404
    subs: list[Any] = [{"url": u} for u in ("", "ftp://example.com/", "https://10.0.0.1/", "https://[::1]/",
                                            "https://u:p@example.com/", "https://e.com/" + "x" * 3000, 5, None)]
    subs += [{}, [], "x", {"url": "https://a.example/", "statuses": ["queued"]},
             {"url": "https://a.example/", "statuses": []}, {"url": "https://a.example/", "statuses": "failed"},
             {"url": "https://a.example/", "tasks": ["x"] * 2}, {"url": "https://a.example/", "tasks": [""]},
             {"url": "https://a.example/", "tasks": [f"t{i}" for i in range(101)]},
             {"url": "https://a.example/", "tenant": "beta"}]
    for sub in subs:
        cases.append((f"subscription {json.dumps(sub)[:30]}", "PUT", "/webhooks/subscription",
                      json.dumps(sub).encode(), j, {422}))
    cases.append(("subscription not JSON", "PUT", "/webhooks/subscription", b"{url", j, {400}))
    cases.append(("subscription as form", "PUT", "/webhooks/subscription", b"url=https://a.example/",
                  {"Content-Type": "application/x-www-form-urlencoded"}, {415}))
    cases.append(("no subscription GET", "GET", "/webhooks/subscription", None, {}, {404}))
    cases.append(("no subscription DELETE", "DELETE", "/webhooks/subscription", None, {}, {404}))
    cases.append(("POST subscription", "POST", "/webhooks/subscription", None, {}, {405}))
    cases.append(("rotate secret as operator", "POST", "/webhooks/secret/rotate", None, {}, {403}))
    for method in ("GET", "PUT", "DELETE"):
        cases.append((f"{method} secret/rotate", method, "/webhooks/secret/rotate", None, {}, {405}))
    return cases


def _snapshot(stack: Stack) -> dict[bytes, bytes]:
    client = stack.client()
    keys = [*client.scan_iter(f"{stack.namespace}:*", count=1000),
            *client.scan_iter(f"hotqueue:{stack.namespace}*", count=1000)]  # every priority's list
    return {k: client.dump(k) or b"" for k in sorted(keys)}


def test_hostile_input(workdir: Path) -> None:
    stack = Stack(workdir, workers=1).start()
    try:
        for proc in list(stack.workers):  # tasks stay published; nothing but the API touches Redis from here
            stack.terminate_worker(proc)
            proc.wait(30)
        h = stack.http("alpha")
        job = h.submit("sleep", {"seconds": 1}).json()["id"]
        cancelled = h.submit("sleep", {"seconds": 1}).json()["id"]
        assert h.request("DELETE", f"/jobs/{cancelled}").status == 200
        h.request("GET", "/ui/login", headers={"Accept": "text/html"})  # the console's session secret, made once
        # console sessions (a login writes only its audit entry), and tenant beta's job and bulk action
        sessions = {who: login(stack.http(who)) for who in ("alpha", "alpha-viewer", "admin", "beta")}
        beta_job = stack.http("beta").submit("sleep", {"seconds": 1}).json()["id"]
        preview = stack.http("beta").request(
            "POST", "/ui/bulk/preview", raw=urlencode([("csrf_token", sessions["beta"].csrf),
                                                       ("act", "cancel-selected"), ("ids", beta_job)]).encode(),
            headers=sessions["beta"].headers(form=True), auth=False)
        found = re.search(rb'/ui/bulk/([^/"]+)/run', preview.body)
        assert preview.status == 200 and found, preview
        beta_bulk = found.group(1).decode()
        before = _snapshot(stack)

        seen: Counter[int] = Counter()
        wrong: list[str] = []
        not_problem: list[str] = []
        by_http_server: list[str] = []
        sent: list[tuple[str, str]] = []
        cases = _cases(job, stack.namespace, stack.keys["admin"])
        cases += hostile_console.session_cases(sessions, job, stack.namespace, beta_job, beta_bulk)
        for name, method, path, body, headers, ok in cases:
            hdrs = dict(headers)
            use_auth = "Authorization" not in hdrs and "Cookie" not in hdrs  # the console: its session only
            resp = h.request(method, path, raw=body, headers=hdrs, auth=use_auth)
            seen[resp.status] += 1
            sent.append((method, path))
            if resp.status not in ok:
                wrong.append(f"{name}: {method} {path[:60]} -> {resp}")
            elif "x-request-id" not in resp.headers:
                by_http_server.append(name)  # malformed HTTP (e.g. control characters in a header): gunicorn's answer
            elif hdrs.get("Accept") == "text/html":  # a browser: the console's error page (or the form again)
                page = resp.body.decode(errors="replace")
                if resp.content_type != "text/html" or not (
                        f"<h1>{resp.status} ·" in page or (resp.status == 422 and 'class="errors"' in page)):
                    not_problem.append(f"{name}: {resp.status} {resp.content_type} is not the console's error page")
            elif resp.content_type != "application/problem+json":
                not_problem.append(f"{name}: {resp.status} {resp.content_type}")

        raw = _raw_cases(stack, job)
        for name, (status, ok, _) in raw.items():
            seen[status] += 1
            if status not in ok:
                wrong.append(f"raw {name}: {status}")

        # slow clients: trickling requests hold a connection each; everyone else is still served
        key = stack.keys["alpha"].encode()
        slow = b"GET /jobs/" + b"0" * 36 + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + key + b"\r\n\r\n"
        sockets = [slow_request(stack.api_port, slow, SLOW_SECONDS) for _ in range(SLOW_CLIENTS)]
        statuses: list[int] = []
        t = threading.Thread(target=lambda: statuses.extend(trickle(sockets, slow, SLOW_SECONDS)))
        t.start()
        served = []
        while t.is_alive():
            t0 = time.monotonic()
            assert stack.http("alpha", timeout=5).request("GET", f"/jobs/{job}").status == 200
            served.append(time.monotonic() - t0)
            time.sleep(0.1)
        t.join()
        assert statuses == [404] * SLOW_CLIENTS, statuses

        # a crowd of long-polls (every `jobs wait` client) must not take every thread from everyone else
        crowd_waits = _long_poll_crowd(stack, job, LONG_POLLS, LONG_POLL_SECONDS)

        # Reported, not promised: a thread-per-request server is held by clients that trickle; past its
        # threads (WEB_CONCURRENCY x JOBS_API_THREADS = 16 here) others wait. The ingress buffers requests.
        crowd = _crowd_latency(stack, job, 16) if report.FULL else None

        after = _snapshot(stack)
        # A rejected request may leave exactly two traces, both on purpose and both bounded: its audit entry
        # (`denied`, a capped stream) and the failed-key counters of the login rate limit (keys with a TTL).
        traces = {stack.namespace.encode() + b":audit"}
        fail_counters = {k for k in after if k.startswith(stack.namespace.encode() + b":authfail:")}
        client = stack.client()
        unbounded = [k for k in fail_counters if client.pttl(k) <= 0]
        assert not unbounded, f"failed-key counters without a TTL: {unbounded[:5]}"
        audit_len = client.xlen(stack.namespace + ":audit")
        assert audit_len <= AUDIT_STREAM_MAXLEN + 100, audit_len  # MAXLEN ~ trims by whole macro-nodes
        changed = sorted(k for k in set(before) | set(after)
                         if before.get(k) != after.get(k) and k not in traces | fail_counters)

        # as the admin: every operation is reached past the role check (the hand-written cases cover 403s)
        fz = fuzz.run(stack.base_url, stack.keys["admin"], GENERATED)
        # every route the app serves met hostile input: hand-written here, or generated from /openapi.json
        fuzzed = [(label.split()[0], re.sub(r"\{([^}]+)\}", r"<\1>", label.split()[1]))
                  for label, n in fz.by_operation.items() if n]
        unexercised = routes.missing(sent + [(m, "/" + p.lstrip("/")) for m, p in fuzzed] + _RAW_ROUTES,
                                     exempt=HOSTILE_EXEMPT)
        leaks = stack.leaked_secrets()
        server_errors = stack.server_errors_in_logs()
        report.record(report.Row(
            "hostile input", fz.statuses[202], None, None, None, None, None,
            ", ".join(f"{s}x{n}" for s, n in sorted((seen + fz.statuses).items()) if s >= 500) or "none",
            figures={"generated cases": fz.cases, "schema/status failures": len(fz.failures),
                     "hand-written cases": sum(seen.values()), "statuses": dict(sorted(seen.items())),
                     "stored keys changed by rejected requests": len(changed),
                     "max s to serve others during slow clients": max(served, default=0.0),
                     "rejected by gunicorn's HTTP parser": len(by_http_server) + len(raw),
                     "app 4xx not problem+json": len(not_problem),
                     f"others' max s during {LONG_POLLS} long-polls": crowd_waits,
                     **({"others' max s with 16 slow clients": crowd} if crowd is not None else {})},
        ))
        assert not wrong, "\n".join(wrong)
        assert not unexercised, f"routes no hostile request reached (add cases for them): {unexercised}"
        assert not changed, changed[:5]
        assert fz.cases >= GENERATED
        assert fz.server_errors == 0 and not fz.failures, "\n".join(fz.failures)
        assert not [s for s in seen if s >= 500], seen
        assert not server_errors, server_errors[:3]
        assert max(served) < 2.0, served
        assert crowd_waits < 2.0, f"others waited {crowd_waits:.1f}s behind {LONG_POLLS} long-polls"
        assert not not_problem, "\n".join(not_problem)
        assert not leaks
    finally:
        stack.stop()


def _raw_cases(stack: Stack, job: str) -> dict[str, tuple[int, set[int], str]]:
    """Requests sent byte for byte: (status, acceptable statuses, first bytes of the answer) per name."""
    port = stack.api_port
    auth = b"Authorization: Bearer " + stack.keys["alpha"].encode() + b"\r\n"
    post = b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + auth
    out: dict[str, tuple[int, set[int], str]] = {}

    def run(name: str, head: bytes, body: bytes = b"", ok: frozenset[int] = frozenset({400})) -> None:
        status, data = exchange(port, head, body)
        out[name] = (status, set(ok), data[:80].decode(errors="replace"))

    ten = b'{"task":"sleep","params":{"x":"' + b"y" * (10 * MiB) + b'"}}'
    run("10 MiB body (Content-Length)", post + f"Content-Length: {len(ten)}\r\n\r\n".encode(), ten, frozenset({413}))
    pieces = [ten[i : i + 65536] for i in range(0, len(ten), 65536)]
    chunks = b"".join(b"%x\r\n" % len(piece) + piece + b"\r\n" for piece in pieces)
    run("10 MiB body (chunked)", post + b"Transfer-Encoding: chunked\r\n\r\n", chunks + b"0\r\n\r\n", frozenset({413}))
    batch = json.dumps({"jobs": [{"task": "echo", "params": {"x": "y" * 2000}}] * 1000}).encode()  # 2 MiB
    head = post.replace(b"POST /jobs ", b"POST /jobs/batch ") + f"Content-Length: {len(batch)}\r\n\r\n".encode()
    run("2 MiB batch", head, batch, frozenset({413}))
    form = b"api_key=" + b"k" * (2 * MiB)  # the console's login form: the same body limit
    run("2 MiB console form", b"POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
        b"\r\n" + f"Content-Length: {len(form)}\r\n\r\n".encode(), form, frozenset({413}))
    run("CR in a header value", b"GET /jobs HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Evil: a\rInjected: 1\r\n\r\n")
    run("LF in a header value", b"GET /jobs HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Evil: a\nInjected: 1\r\n\r\n",
        ok=frozenset({400, 200}))  # a bare LF ends the header line for lenient parsers: then it is just two headers
    run("CR/LF in Idempotency-Key", post + b"Idempotency-Key: a\r\n b\r\nContent-Length: 2\r\n\r\n{}")
    run("NUL in a header", b"GET /jobs HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Evil: a\x00b\r\n\r\n")
    run("invalid UTF-8 in Idempotency-Key", post + b"Idempotency-Key: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}")
    run("CR/LF in the path", b"GET /jobs/a\rb HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n", ok=frozenset({400, 404}))
    run("header over 8 KiB", b"GET /jobs HTTP/1.1\r\nHost: x\r\n" + auth + b"X-Big: " + b"a" * 9000 + b"\r\n\r\n",
        ok=frozenset({400, 431}))
    run("both Content-Length and chunked", post + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ok=frozenset({400}))
    run("negative Content-Length", post + b"Content-Length: -1\r\n\r\n")
    return out


def _crowd_latency(stack: Stack, job: str, clients: int) -> float:
    """Worst latency of normal requests while ``clients`` slow clients trickle their requests for SLOW_SECONDS."""
    slow = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    sockets = [slow_request(stack.api_port, slow, SLOW_SECONDS) for _ in range(clients)]
    t = threading.Thread(target=trickle, args=(sockets, slow, SLOW_SECONDS))
    t.start()
    worst = 0.0
    while t.is_alive():
        t0 = time.monotonic()
        try:
            stack.http("alpha", timeout=SLOW_SECONDS + 5).request("GET", f"/jobs/{job}")
        except OSError:
            pass
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.2)
    t.join()
    return worst


def _long_poll_crowd(stack: Stack, job: str, clients: int, seconds: float) -> float:
    """Worst latency of other requests while ``clients`` long-poll ``job`` (queued: no worker runs) for ``seconds``."""
    def poll() -> None:
        try:
            stack.http("alpha", timeout=seconds + 30).request("GET", f"/jobs/{job}?wait={seconds:g}")
        except OSError:
            pass

    threads = [threading.Thread(target=poll) for _ in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    worst = 0.0
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        try:
            stack.http("alpha", timeout=seconds + 30).request("GET", "/tasks")
        except OSError:
            pass
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.1)
    for t in threads:
        t.join()
    return worst
