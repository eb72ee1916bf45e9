"""Jobs API HTTP service: ``create_app()`` is the WSGI application factory run by gunicorn."""

__version__ = "0.1.0"

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> object:
    # Lazy so `import jobs_api` (e.g. by gunicorn.conf.py in the master) does not import Flask or
    # prometheus_client before PROMETHEUS_MULTIPROC_DIR is set.
    if name == "create_app":
        from jobs_api.app import create_app

        return create_app
    raise AttributeError(name)
