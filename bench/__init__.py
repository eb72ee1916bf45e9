"""``make bench``: Jobs API measured side by side with RQ, Celery, Dramatiq, Huey and a bare hotqueue loop.

Entry point: ``python -m bench`` (see :mod:`bench.run`). Bench-only packages live in ``.venv-bench``
(``bench/requirements.txt``); our own system is driven from the project ``.venv``.
"""
