"""``jobs-api``: run the API under gunicorn with the packaged configuration.

Extra arguments are passed to gunicorn (e.g. ``jobs-api --workers 4``); the configuration is
``jobs_api/gunicorn_conf.py`` (bind ``JOBS_BIND``, ``WEB_CONCURRENCY`` workers, JSON logs, metrics
directory). ``gunicorn -c services/api/gunicorn.conf.py`` is equivalent.

A bad setting (in the environment, ``GUNICORN_CMD_ARGS`` or the arguments) or an address already in use
stops it before gunicorn starts, with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import socket
import sys
import time
from collections.abc import Mapping
from typing import NoReturn

from jobs_core.config import Settings
from jobs_core.errors import ConfigError

EXIT_CONFIG = 2
BIND_PATIENCE_SECONDS = 3.0  # how long an address in use may take to free up before it is an error


def _gunicorn_options(args: list[str], source: str) -> argparse.Namespace:
    """``args`` parsed and validated as gunicorn options; :class:`ConfigError` naming ``source`` when bad."""
    from gunicorn.config import Config

    cfg = Config(prog="jobs-api")
    parser = cfg.parser()

    def error(message: str) -> NoReturn:  # argparse would print the usage and exit: one line instead
        raise ConfigError(f"{source}: {message}")

    parser.error = error
    options: argparse.Namespace = parser.parse_args(args)
    for name, value in vars(options).items():
        if value is None or name == "args":
            continue
        try:
            cfg.set(name.lower(), value)  # gunicorn's own validators (ranges, choices, paths)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{source}: --{name.replace('_', '-')}: {e}") from e
    return options


def _check_free(address: str) -> None:
    """Refuse, before gunicorn retries for 5 s and exits with a traceback-like log, an address in use."""
    if address.startswith(("unix:", "fd://")):
        return
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (OSError, ValueError) as e:
        raise ConfigError(f"JOBS_BIND: cannot resolve {address!r}: {e}") from e
    family, _, _, _, sockaddr = infos[0]
    deadline = time.monotonic() + BIND_PATIENCE_SECONDS
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn does
            try:
                probe.bind(sockaddr)
                return
            except OSError as e:
                # a previous instance's sockets may linger a moment (its workers outlive a killed master)
                if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                    raise ConfigError(f"JOBS_BIND: cannot listen on {address}: {e.strerror}") from e
        time.sleep(0.5)


def check_startup(args: list[str], env: Mapping[str, str] | None = None) -> Settings:
    """Everything that would stop gunicorn at start, checked first; raises :class:`ConfigError`."""
    env = os.environ if env is None else env
    settings = Settings.from_env(env)
    # neither imports prometheus_client: it must not be imported before gunicorn_conf sets its directory
    from jobs_api.background import load_declared
    from jobs_api.console.session import ConsoleConfig

    ConsoleConfig.from_env(env)
    if settings.schedules_file:
        load_declared(settings.schedules_file)
    from_env = _gunicorn_options(shlex.split(env.get("GUNICORN_CMD_ARGS", "")), "GUNICORN_CMD_ARGS")
    from_args = _gunicorn_options(args, "jobs-api arguments")
    binds = from_args.bind or from_env.bind or [settings.bind]
    for address in binds:
        _check_free(address)
    return settings


def main(argv: list[str] | None = None) -> None:
    """Start gunicorn on ``jobs_api.app:create_app()``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\ngunicorn options:\n")
    elif not {"-v", "--version"} & set(args):
        try:
            check_startup(args)
        except ConfigError as e:
            sys.stderr.write(f"jobs-api: configuration error: {e}\n")
            sys.exit(EXIT_CONFIG)
    from gunicorn.app.wsgiapp import run

    sys.argv = ["jobs-api", "-c", "python:jobs_api.gunicorn_conf", *args]
    run()


if __name__ == "__main__":
    main()
