"""Fixtures of the console's server-side tests: the app with API keys on a per-test namespace of the real
Redis, and a browser-like client that logs in through the form and sends the CSRF token back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from api.conftest import TASKS, Runner
from flask import Flask
from flask.testing import FlaskClient
from jobs_api.app import create_app
from jobs_api.console.session import ConsoleConfig
from jobs_core.config import Settings, load_api_keys
from jobs_core.store import JobStore
from werkzeug.test import TestResponse

from console.browser import Pages

KEY_ALPHA = "key-alpha-0123456789abcdef"
KEY_BETA = "key-beta-fedcba9876543210"
HTML = {"Accept": "text/html"}
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


class Browser:
    """A test client that behaves like a browser on the console: asks for HTML, keeps cookies, posts forms
    with the page's CSRF token."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.csrf = ""

    def get(self, path: str, **kwargs: Any) -> TestResponse:
        resp = self.client.get(path, headers={**HTML, **kwargs.pop("headers", {})}, **kwargs)
        found = _CSRF.search(resp.get_data(as_text=True))
        if found:
            self.csrf = found.group(1)
        return resp

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kwargs: Any) -> TestResponse:
        form = dict(data or {})
        if csrf:
            form.setdefault("csrf_token", self.csrf)
        return self.client.post(path, data=form, headers={**HTML, **kwargs.pop("headers", {})}, **kwargs)

    def login(self, key: str) -> TestResponse:
        self.get("/ui/login")
        resp = self.post("/ui/login", {"api_key": key, "next": "/ui/jobs"})
        self.get("/ui/jobs")  # the session's fresh CSRF token
        return resp


def console_app(settings: Settings, store: JobStore, keys: str | None, **console: Any) -> Flask:
    """The app on ``settings`` with ``keys`` (``tenant:key,...``; None = auth off)."""
    store.publish_tasks(TASKS)
    api_keys = load_api_keys({"JOBS_API_KEYS": keys}) if keys else {}
    return create_app({
        "JOBS_SETTINGS": settings.replace(api_keys=api_keys),
        "JOBS_STORE": store,
        "JOBS_CONSOLE": ConsoleConfig(**console),
        "TESTING": True,
    })


@pytest.fixture
def app(settings: Settings, store: JobStore) -> Flask:
    return console_app(settings, store, f"alpha:{KEY_ALPHA},beta:{KEY_BETA}")


@pytest.fixture
def alpha(app: Flask) -> Browser:
    b = Browser(app.test_client())
    assert b.login(KEY_ALPHA).status_code == 303
    return b


@pytest.fixture
def beta(app: Flask) -> Browser:
    b = Browser(app.test_client())
    assert b.login(KEY_BETA).status_code == 303
    return b


@pytest.fixture
def pages(chromium: Any, stack: Any, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """Watched Chromium pages on the browser module's ``stack`` (its ``chromium`` and ``stack`` fixtures);
    a screenshot of every page when the test failed."""
    p = Pages(chromium, stack.url)
    yield p
    rep = getattr(request.node, "rep_call", None)
    p.close(failed=rep is None or rep.failed, name=request.node.name)


@pytest.fixture
def runner(store: JobStore) -> Runner:
    return Runner(store)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so browser fixtures know a test failed (screenshots)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
