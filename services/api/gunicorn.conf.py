"""gunicorn configuration of the Jobs API: ``gunicorn -c services/api/gunicorn.conf.py``.

The settings live in the package (``jobs_api/gunicorn_conf.py``) so an installed ``jobs-api`` finds them
without this file; this file re-exports them for direct gunicorn use.
"""

from jobs_api.gunicorn_conf import *  # noqa: F403
