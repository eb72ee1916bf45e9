"""``jobs-api``: run the API under gunicorn with the packaged configuration.

Extra arguments are passed to gunicorn (e.g. ``jobs-api --workers 4``); the configuration is
``jobs_api/gunicorn_conf.py`` (bind ``JOBS_BIND``, ``WEB_CONCURRENCY`` workers, JSON logs, metrics
directory). ``gunicorn -c services/api/gunicorn.conf.py`` is equivalent.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Start gunicorn on ``jobs_api.app:create_app()``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\ngunicorn options:\n")
    from gunicorn.app.wsgiapp import run

    sys.argv = ["jobs-api", "-c", "python:jobs_api.gunicorn_conf", *args]
    run()


if __name__ == "__main__":
    main()
