"""Hostile input to the console as a logged-in browser: the cases of the hostile-input scenario that need
console sessions (tests/reliability/test_hostile_input.py sends them and checks what they changed)."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from reliability.console import Session

#: (name, method, path, body, headers, acceptable statuses), as the scenario's other cases.
Case = tuple[str, str, str, Any, dict[str, str], set[int]]


def session_cases(s: dict[str, Session], job: str, queue: str, beta_job: str, beta_bulk: str,
                  ) -> list[Case]:
    """The console as a logged-in browser (session cookie, no bearer key, ``Accept: text/html``): bad forms,
    missing or forged CSRF tokens, oversized fields, roles too small, other tenants' jobs and bulk actions,
    bad filters on every page. ``s``: sessions of alpha's operator, alpha's viewer and the admin (tenant ops).
    Each must get its precise 4xx as the console's error page (the run form's own 422: the form again, with
    its errors), and change nothing stored."""
    op, viewer, admin = s["alpha"], s["alpha-viewer"], s["admin"]
    cases: list[Case] = []

    def post(name: str, who: Session, path: str, fields: list[tuple[str, str]] | None, ok: set[int],
             csrf: str | None = None, query: str = "") -> None:
        token = who.csrf if csrf is None else csrf
        body = urlencode(([("csrf_token", token)] if token else []) + (fields or [])).encode()
        cases.append((f"console {name}", "POST", path + query, body, who.headers(form=True), ok))

    posts = [(f"/ui/jobs/{job}/cancel", op), (f"/ui/jobs/{job}/retry", op), ("/ui/bulk/preview", op),
             (f"/ui/bulk/{beta_bulk}/run", op), (f"/ui/queues/{queue}/pause", admin),
             (f"/ui/queues/{queue}/resume", admin), (f"/ui/queues/{queue}/cap", admin), ("/ui/tasks/echo/run", op),
             ("/ui/webhooks/secret/rotate", admin), ("/ui/logout", op), ("/ui/login", op)]
    fields = [("act", "cancel-selected"), ("ids", job), ("cap", "1"), ("api_key", "x")]
    for path, who in posts:  # CSRF first, whatever the role: missing, forged, another session's, in a header
        post(f"{path[:28]} without CSRF", who, path, fields, {403}, csrf="")
        post(f"{path[:28]} forged CSRF", who, path, fields, {403}, csrf="f" * 43)
        post(f"{path[:28]} another session's CSRF", who, path, fields, {403},
             csrf=(viewer if who is not viewer else op).csrf)
        cases.append((f"console {path[:28]} forged CSRF header", "POST", path, b"",
                      {**who.headers(form=True), "X-CSRF-Token": "x"}, {403}))
    # roles: a viewer changes nothing; an operator neither controls queues nor rotates the webhook secret
    for path in (f"/ui/jobs/{job}/cancel", f"/ui/jobs/{job}/retry", "/ui/bulk/preview", f"/ui/bulk/{beta_bulk}/run",
                 "/ui/tasks/echo/run", f"/ui/queues/{queue}/pause", "/ui/webhooks/secret/rotate"):
        post(f"viewer {path[:28]}", viewer, path, [("act", "cancel-selected"), ("ids", job)], {403})
    for path in (f"/ui/queues/{queue}/pause", f"/ui/queues/{queue}/resume", f"/ui/queues/{queue}/cap",
                 "/ui/webhooks/secret/rotate"):
        post(f"operator {path[:28]}", op, path, [("cap", "1")], {403})
    # other tenants' jobs and bulk actions, and ids that are none: 404, never another tenant's
    for action in ("cancel", "retry"):
        post(f"B's job {action}", op, f"/ui/jobs/{beta_job}/{action}", None, {404})
        for bad in ("*", "%2A", "..%2F..", "%00", job.upper(), str(uuid.UUID(int=0))):
            post(f"job id {bad[:10]!r} {action}", op, f"/ui/jobs/{bad}/{action}", None, {404})
    post("B's bulk action run", op, f"/ui/bulk/{beta_bulk}/run", None, {404})
    for bad in ("0123456789abcdef", "*", "..%2F..", "%00"):
        post(f"bulk id {bad!r} run", op, f"/ui/bulk/{bad}/run", None, {404})
    # bad forms
    for name, form in (("no act", []), ("act delete", [("act", "delete-selected")]),
                       ("act cancel-all", [("act", "cancel-everything")]), ("act NUL", [("act", "cancel\x00selected")]),
                       ("no ids", [("act", "cancel-selected")]), ("id *", [("act", "cancel-selected"), ("ids", "*")]),
                       ("id path", [("act", "retry-selected"), ("ids", job), ("ids", "../../x")]),
                       ("10001 ids", [("act", "cancel-selected")] + [("ids", job)] * 10_001)):
        post(f"bulk preview {name}", op, "/ui/bulk/preview", form, {400})
    for query in ("status=bogus", "task=%00", "tenant=a:b", "from=yesterday", "param=a%20b&value=1",
                  "value=" + "v" * 501 + "&param=a"):
        post(f"bulk preview filter {query[:20]}", op, "/ui/bulk/preview", [("act", "cancel-filter")], {400},
             query="?" + query)
    for name, form, ok in (("params not JSON", [("params_json", "{")], {400}),
                           ("params an array", [("params_json", "[1]")], {422}),
                           ("field over 64 KiB", [("params_json", "{}"), ("p.x", "y" * 70_000)], {413}),
                           ("max_attempts x", [("max_attempts", "x")], {422}),
                           ("timeout -1", [("timeout", "-1")], {422}),
                           ("delay 1e400", [("delay", "1e400")], {422})):
        post(f"run echo: {name}", op, "/ui/tasks/echo/run", form, ok)
    post("run sleep: seconds abc", op, "/ui/tasks/sleep/run", [("p.seconds", "abc")], {422})
    for bad in ("nope", "%00", "..%2F..", "*", "x" * 300):
        post(f"run task {bad[:12]!r}", op, f"/ui/tasks/{bad}/run", None, {404})
    for cap in ("-1", "x", "100001", "1e3", "1.5", "\u00b2", "0x10", "9" * 30):
        post(f"queue cap {cap[:10]!r}", admin, f"/ui/queues/{queue}/cap", [("cap", cap)], {400})
    for bad in ("nope", "*", "%00", "hotqueue:jobs", queue.upper(), "x" * 300):
        for action in ("pause", "resume", "cap"):
            post(f"queue {bad[:12]!r} {action}", admin, f"/ui/queues/{bad}/{action}", [("cap", "1")], {404})
    # pages and their filters (GET: the error page), other tenants' jobs and bulk actions
    bad_gets = [f"/ui/jobs?{q}" for q in ("status=bogus", "limit=0", "limit=201", "limit=abc", "cursor=abc",
                                           "cursor=" + "9" * 600, "id=xyz", "id=" + job + "x", "from=yesterday",
                                           "to=2026-13-01", "task=%00", "queue=a:b", "param=a%20b", "tenant=**",
                                           "value=" + "v" * 501)]
    bad_gets += ["/ui/?sort=bogus", "/ui/?sort=%00"]
    bad_gets += [f"/ui/audit?{q}" for q in ("limit=0", "limit=abc", "before=x", "before=99999999999999999999-0",
                                            "outcome=bogus", "via=mail", "action=Queue")]
    bad_gets += [f"/ui/webhooks?{q}" for q in ("limit=0", "limit=501", "limit=abc", "before=abc", "before=1-0-0",
                                               "before=99999999999999999999-0")]
    for path in bad_gets:
        cases.append((f"console GET {path[:36]}", "GET", path, None, op.headers(), {400}))
    # an admin's ?tenant= is parsed: a bad one is 400 (others' is not read: they see their own tenant)
    for path in ("/ui/webhooks?tenant=a:b", "/ui/webhooks?tenant=%00", "/ui/webhooks?tenant=" + "t" * 65,
                 "/ui/schedules?tenant=a:b", "/ui/schedules?tenant=%00", "/ui/schedules?tenant=" + "t" * 65,
                 "/ui/jobs?tenant=**", "/ui/audit?tenant=%2A", "/ui/audit?tenant=a:b"):
        cases.append((f"admin GET {path[:36]}", "GET", path, None, admin.headers(), {400}))
    for path in (f"/ui/jobs/{beta_job}", f"/ui/jobs/{beta_job}/params", f"/ui/jobs/{beta_job}/result",
                 f"/ui/jobs/{beta_job}/state", f"/ui/bulk/{beta_bulk}", f"/ui/bulk/{beta_bulk}/status",
                 "/ui/jobs/..%2F..", "/ui/jobs/%00/state", "/ui/bulk/*/status", "/ui/bulk/0123456789abcdef"):
        cases.append((f"console GET {path[:36]}", "GET", path, None, op.headers(), {404}))
    for path in (f"/ui/jobs/{beta_job}/state", f"/ui/bulk/{beta_bulk}/status"):  # the pages' JSON helpers
        cases.append((f"console JSON {path[:30]}", "GET", path, None, op.cookie, {404}))
    for method, path in (("POST", "/ui/workers"), ("DELETE", f"/ui/jobs/{job}"), ("PUT", "/ui/queues"),
                         ("GET", f"/ui/jobs/{job}/cancel"), ("GET", "/ui/webhooks/secret/rotate"),
                         ("POST", "/ui/schedules"), ("GET", "/ui/logout"), ("POST", "/ui/audit"),
                         ("POST", "/ui/tasks"), ("POST", "/ui/")):
        cases.append((f"console {method} {path[:28]}", method, path, None, op.headers(), {405}))
    return cases
