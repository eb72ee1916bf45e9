"""Failed API-key authentication is rate limited per client address and per key prefix (issue 13), in
Redis so the count holds across processes: in process on the real Redis, and on a real gunicorn with two
processes behind a stand-in proxy (X-Forwarded-For, JOBS_TRUSTED_PROXY_HOPS=1)."""

from __future__ import annotations

import re
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jobs_core.config import Settings, load_api_keys
from jobs_core.store import JobStore

from api.conftest import TASKS, make_app
from api.stack import ApiStack, http

KEY = "alpha-right-key-0123456789"
LIMIT = 3


def _app(settings: Settings, store: JobStore, limit: int = LIMIT) -> Flask:
    store.publish_tasks(TASKS)
    return make_app(settings.replace(api_keys=load_api_keys({"JOBS_API_KEYS": f"alpha:{KEY}"}),
                                     auth_failure_limit=limit, trusted_proxy_hops=1), store)


def _get(client: FlaskClient, key: str, address: str) -> int:
    resp = client.get("/jobs", headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": address})
    return resp.status_code


def _wrong() -> str:
    return secrets.token_hex(12)  # a fresh prefix each time: only the address is counted


def test_an_address_over_the_limit_is_refused_even_with_the_right_key(settings: Settings, store: JobStore) -> None:
    client = _app(settings, store).test_client()
    assert [_get(client, _wrong(), "10.0.0.1") for _ in range(LIMIT)] == [401] * LIMIT
    resp = client.get("/jobs", headers={"Authorization": f"Bearer {_wrong()}", "X-Forwarded-For": "10.0.0.1"})
    assert resp.status_code == 429 and resp.content_type == "application/problem+json"
    assert resp.get_json()["type"] == "/problems/too-many-failed-logins"
    assert 1 <= int(resp.headers["Retry-After"]) <= settings.auth_failure_window_seconds
    assert _get(client, KEY, "10.0.0.1") == 429  # guessing stops: the right key waits too
    assert _get(client, KEY, "10.0.0.2") == 200  # another client is not affected


def test_a_key_prefix_over_the_limit_is_refused_from_any_address(settings: Settings, store: JobStore) -> None:
    client = _app(settings, store).test_client()
    guesses = [f"alpha-ri{secrets.token_hex(8)}" for _ in range(LIMIT + 1)]  # the right key's prefix
    statuses = [_get(client, g, f"10.1.0.{i}") for i, g in enumerate(guesses)]
    assert statuses == [401] * LIMIT + [429]
    assert _get(client, KEY, "10.1.0.200") == 429  # that prefix, from a fresh address
    assert _get(client, f"zz{KEY}", "10.1.0.201") == 401  # another prefix is only a wrong key


def test_the_count_is_shared_by_processes(settings: Settings, store: JobStore) -> None:
    """Two apps on one Redis stand in for two gunicorn processes (the gunicorn test below is the real one)."""
    first, second = _app(settings, store).test_client(), _app(settings, store).test_client()
    assert [_get(c, _wrong(), "10.2.0.1") for c in (first, second, first)] == [401] * LIMIT
    assert _get(second, _wrong(), "10.2.0.1") == 429
    assert _get(second, KEY, "10.2.0.1") == 429


def test_no_limit_when_set_to_zero(settings: Settings, store: JobStore) -> None:
    client = _app(settings, store, limit=0).test_client()
    assert {_get(client, _wrong(), "10.3.0.1") for _ in range(LIMIT + 3)} == {401}
    assert _get(client, KEY, "10.3.0.1") == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ApiStack]:
    s = ApiStack(tmp_path_factory.mktemp("auth-limit"), redis_url, workers=0, web_concurrency=2,
                 api_keys=f"alpha:{KEY}", extra_env={"JOBS_AUTH_FAILURE_LIMIT": str(LIMIT),
                                                     "JOBS_TRUSTED_PROXY_HOPS": "1"})
    s.start()
    try:
        yield s
    finally:
        s.stop()


def _login(stack: ApiStack, key: str, address: str) -> tuple[int, dict[str, str], str]:
    """POST the login form as a browser would: its CSRF cookie and token first."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    page = opener.open(urllib.request.Request(stack.url + "/ui/login", headers={"X-Forwarded-For": address}))
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.read().decode())
    assert token is not None
    body = urllib.parse.urlencode({"api_key": key, "csrf_token": token.group(1)}).encode()
    req = urllib.request.Request(stack.url + "/ui/login", data=body, headers={
        "X-Forwarded-For": address, "Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"})
    try:
        resp = opener.open(req)
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode()


def test_gunicorn_counts_across_processes_and_the_login_page_says_when_to_retry(stack: ApiStack,
                                                                               tmp_path: Path) -> None:
    del tmp_path
    statuses = []
    for _ in range(LIMIT + 1):  # new connections: gunicorn's two processes both take some
        status, headers, _ = http("GET", stack.url + "/jobs", None,
                                  {"Authorization": f"Bearer {_wrong()}", "X-Forwarded-For": "192.0.2.7"})
        statuses.append(status)
    assert statuses == [401] * LIMIT + [429]
    assert int(headers["retry-after"]) >= 1
    status, headers, page = _login(stack, _wrong(), "192.0.2.7")
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert "Too many failed attempts. Please wait" in page
    # the console login counts too, from another address: LIMIT wrong ones, then the page says wait
    assert [_login(stack, _wrong(), "192.0.2.8")[0] for _ in range(LIMIT)] == [401] * LIMIT
    assert _login(stack, _wrong(), "192.0.2.8")[0] == 429
    assert _login(stack, KEY, "192.0.2.9")[0] == 200  # a right key elsewhere logs in (303 to the console)
