"""A real Chromium (Debian's ``chromium``, installed by scripts/bootstrap.sh) driven by Playwright.

One browser per test module; each test gets fresh contexts (cookie jars). Every page a test opens is watched
for console errors and uncaught exceptions (a CSP violation is one) and is saved as a screenshot under
``test-artifacts/console/`` when the test fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "console"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """One headless Chromium for the module (Playwright never downloads a browser of its own)."""
    assert Path(CHROMIUM).exists(), "chromium is missing: run `make install` (scripts/bootstrap.sh installs it)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Pages:
    """Opens watched pages in fresh contexts and records every console error they report."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[BrowserContext] = []
        self.pages: list[Page] = []
        self.errors: list[str] = []
        self.budget_503s = 0  # /events refused for want of a stream slot (see _console)

    def new(self, **context: Any) -> Page:
        ctx = self.browser.new_context(base_url=self.base_url, viewport={"width": 1280, "height": 900}, **context)
        ctx.set_default_timeout(15_000)
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        self.pages.append(page)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        """Every console error counts, but one: ``GET /events`` answered 503 because this process's stream
        slots are still held by the streams of pages just left (a gone client is noticed at its next
        keepalive). That answer is the documented budget (README, "what an open stream costs"), and the
        page then falls back to polling, which the tests see working; a fast click-through meets it."""
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if "status of 503" in message.text and urlsplit(url).path.endswith("/events"):
            self.budget_503s += 1
            return
        self.errors.append(f"{message.type}: {message.text}")

    def close(self, failed: bool, name: str) -> None:
        if failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for i, page in enumerate(self.pages):
                try:
                    page.screenshot(path=str(ARTIFACTS / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}-{i}.png"),
                                    full_page=True)
                except Exception as e:  # a crashed page: the other screenshots still get written
                    print(f"screenshot {i} failed: {e}")
        for ctx in self.contexts:
            ctx.close()
