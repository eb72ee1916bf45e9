"""Which of the API's routes a scenario's requests reached, read from the app's own ``url_map``: a route
added later that joins no scenario fails that scenario (hostile input, tenant isolation), by name."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from jobs_api.app import create_app
from jobs_core.config import Settings
from werkzeug.exceptions import HTTPException
from werkzeug.routing import MapAdapter

#: (method, rule) of every route the app serves (HEAD and OPTIONS are Flask's own).
Route = tuple[str, str]


@functools.cache
def _app_map() -> tuple[frozenset[Route], MapAdapter]:
    # the app is only built for its url_map: no request reaches it, so no Redis is needed
    app = create_app({"JOBS_SETTINGS": Settings(redis_url="redis://127.0.0.1:1/0", key_prefix="routes")})
    served = frozenset((method, rule.rule) for rule in app.url_map.iter_rules()
              for method in (rule.methods or set()) - {"HEAD", "OPTIONS"})
    return served, app.url_map.bind("scenario")


def routes() -> set[Route]:
    """Every (method, rule) the API app serves."""
    return set(_app_map()[0])


def reached(requests: Iterable[tuple[str, str]]) -> set[Route]:
    """The routes that ``(method, path)`` requests matched (a path that matches none, or only with another
    method, reaches nothing)."""
    _, adapter = _app_map()
    out: set[Route] = set()
    for method, path in requests:
        try:
            rule, _ = adapter.match(unquote(urlsplit(path).path), method, return_rule=True)
        except HTTPException:
            continue
        out.add((method, rule.rule))
    return out


def missing(requests: Iterable[tuple[str, str]], exempt: dict[Route, str] | None = None) -> list[Route]:
    """The app's routes no request reached, except ``exempt`` ones (each with its reason)."""
    exempt = exempt or {}
    unknown = set(exempt) - routes()
    assert not unknown, f"exempted routes the app no longer serves: {sorted(unknown)}"
    return sorted(routes() - reached(requests) - set(exempt))
