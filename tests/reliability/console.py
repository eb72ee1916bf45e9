"""Console (``/ui``) sessions for the scenarios: log an API key in through the login form, as a browser does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from reliability.http import Http


@dataclass(frozen=True)
class Session:
    """A logged-in console session: its cookie header and its CSRF token."""

    cookie: dict[str, str]
    csrf: str

    def headers(self, form: bool = False) -> dict[str, str]:
        """A browser's headers for this session (HTML wanted; ``form``: a urlencoded form body)."""
        extra = {"Content-Type": "application/x-www-form-urlencoded"} if form else {}
        return {**self.cookie, "Accept": "text/html", **extra}


def csrf_of(resp: Any) -> str:
    """The CSRF token a console page carries (its ``csrf-token`` meta tag)."""
    found = re.search(rb'name="csrf-token" content="([^"]+)"', resp.body)
    assert found, resp
    return found.group(1).decode()


def _cookie_of(resp: Any) -> dict[str, str]:
    return {"Cookie": resp.headers["set-cookie"].split(";", 1)[0]}


def login(h: Http) -> Session:
    """Log ``h``'s key in to the console (login page, then its form): the session."""
    page = h.request("GET", "/ui/login", headers={"Accept": "text/html"}, auth=False)
    form = urlencode({"api_key": h.api_key or "", "csrf_token": csrf_of(page)}).encode()
    done = h.request("POST", "/ui/login", raw=form, auth=False, headers={
        **_cookie_of(page), "Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"})
    assert done.status == 303, done
    cookie = _cookie_of(done)
    jobs_page = h.request("GET", "/ui/jobs", headers={**cookie, "Accept": "text/html"}, auth=False)
    return Session(cookie, csrf_of(jobs_page))
