"""The bare Flask "hello" app that ``POST /jobs`` is compared with, under the same gunicorn settings."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.route("/jobs", methods=["GET", "POST"])
def hello() -> tuple[str, int]:
    """No validation, no Redis: the cost of gunicorn + Flask alone."""
    return "hello", 202
