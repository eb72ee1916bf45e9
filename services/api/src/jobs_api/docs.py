"""``/openapi.json`` and ``/docs`` (Swagger UI whose assets ship in the flask-swagger-ui wheel; no CDN)."""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

import orjson
from flask import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound

from jobs_api.openapi import build_spec

bp = Blueprint("docs", __name__)

_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "index.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Jobs API docs</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="stylesheet" href="/docs/assets/index.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""

_INIT = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  });
};
"""

# Everything the page loads comes from this origin; inline styles are used by Swagger UI itself.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@functools.cache
def _assets_dir() -> Path:
    return Path(str(importlib.resources.files("flask_swagger_ui") / "dist"))


@functools.cache
def _spec_bytes() -> bytes:
    return orjson.dumps(build_spec())


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 document."""
    return Response(_spec_bytes(), mimetype="application/json")


@bp.get("/docs")
def docs_page() -> Response:
    """Swagger UI for this API."""
    resp = Response(_PAGE, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = _CSP
    return resp


@bp.get("/docs/init.js")
def docs_init() -> Response:
    """Swagger UI start-up script (a file, not inline, so the CSP can forbid inline scripts)."""
    return Response(_INIT, mimetype="text/javascript")


@bp.get("/docs/assets/<name>")
def docs_asset(name: str) -> Response:
    """One Swagger UI asset from the installed wheel (an allow-list: nothing else is served)."""
    if name not in _ASSETS:
        raise NotFound()
    return send_from_directory(_assets_dir(), name, max_age=86400)
