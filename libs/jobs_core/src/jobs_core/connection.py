"""Connections to Redis: standalone (``REDIS_URL``) or through Sentinel, and replicated acknowledgement.

Every client built here retries a command that met a connection error (reset, refused, ``LOADING``, or a
primary demoted under it: Sentinel-managed connections turn ``READONLY`` into a connection error and look
the primary up again before the next try). The engine's scripts are safe to re-send after a lost reply
(see :mod:`jobs_core.scripts`), and a re-send that lands on a promoted replica with an empty script
cache loads the script again (``NOSCRIPT``). The hot ones (``ENQUEUE``, ``FINISH_CLAIM``) bypass that
retry and are re-sent explicitly with a send number, so that their first send skips the re-send check
(:mod:`jobs_core.resend`).

With ``JOBS_ACK_REPLICAS=N`` the writes that must not be lost (a submission, a finish or hand-back,
cancel and retry) go through :class:`ReplicatedScript`: the script, a fence write, ``WAIT`` and
``WAITAOF 1 N timeout`` in one pipeline on one connection, and the caller gets the script's reply only
when the primary and ``N`` replicas have fsynced it to their append-only files.
"""

from __future__ import annotations

import ssl
from typing import Any, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError
from redis.retry import Retry
from redis.sentinel import Sentinel

from jobs_core.config import Settings
from jobs_core.errors import ConfigError, NotReplicated

#: How often a pipeline whose script met NOSCRIPT (a re-send that reached a just-promoted replica) is re-run.
NOSCRIPT_RERUNS = 3


def _tls(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    if settings.redis_tls_ca_file:
        kwargs["ssl_ca_certs"] = settings.redis_tls_ca_file
    return kwargs


def connect(settings: Settings, *, socket_timeout: float | None = 10.0) -> redis.Redis:
    """A pooled Redis client for ``settings`` (password, TLS, retries on connection errors).

    With ``REDIS_SENTINELS`` the client talks to the primary the sentinels name, and finds the new one by
    itself after a failover; otherwise to ``REDIS_URL``.
    """
    kwargs: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if settings.redis_password:
        kwargs["password"] = settings.redis_password
    if settings.redis_sentinels:
        return sentinel_primary(settings, kwargs)
    if settings.redis_url.startswith("rediss://"):
        kwargs.update(_tls(settings))
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def sentinel_primary(settings: Settings, kwargs: dict[str, Any]) -> redis.Redis:
    """A client of the primary that Sentinel names for ``REDIS_SENTINEL_MASTER``."""
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
    if settings.redis_sentinel_password:
        sentinel_kwargs["password"] = settings.redis_sentinel_password
    if settings.redis_sentinel_tls:
        sentinel_kwargs |= {"ssl": True, **_tls(settings)}
    if settings.redis_tls:
        kwargs |= {"ssl": True, **_tls(settings)}
    sentinel = Sentinel(list(settings.redis_sentinels), sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
    # check_connection: a fresh connection PINGs first, so a dead address is found before a command is sent
    client = sentinel.master_for(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master, redis_class=redis.Redis, check_connection=True
    )
    return cast(redis.Redis, client)


class ReplicatedScript(Script):
    """A script whose reply is returned only once ``WAITAOF`` confirms it on the primary and N replicas.

    The reply of a re-sent script may come from a run on another connection (a lost reply) or from what is
    already stored (an idempotent replay), which WAITAOF on this connection alone would not cover; the
    fence write after the script moves this connection's replication offset past every earlier write, so
    the confirmation covers those too. Raises :class:`NotReplicated` when the confirmation does not come
    within the timeout: the write may survive a failover or not, so the caller must repeat it.
    """

    def __init__(self, client: redis.Redis, script: str, settings: Settings, fence_key: str) -> None:
        super().__init__(client, script)
        self.replicas = settings.ack_replicas
        self.timeout_ms = max(1, round(settings.ack_timeout_seconds * 1000))
        self.fence_key = fence_key

    def __call__(self, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if client is not None:  # queued on the caller's pipeline: the caller confirms
            return super().__call__(keys, args, client)
        for rerun in range(NOSCRIPT_RERUNS + 1):
            pipe: Pipeline = self.registered_client.pipeline(transaction=False)
            super().__call__(keys, args, pipe)
            pipe.set(self.fence_key, b"1")
            # WAIT first: a replica answers the primary's ack request as soon as it reads it, before its own
            # fsync, so WAITAOF alone in this round trip waits for the replicas' next periodic ack (~1 s);
            # once WAIT returns, WAITAOF's ack request reaches replicas that have fsynced (~1 fsync more)
            pipe.execute_command("WAIT", self.replicas, self.timeout_ms)  # type: ignore[no-untyped-call]
            pipe.execute_command("WAITAOF", 1, self.replicas, self.timeout_ms)  # type: ignore[no-untyped-call]
            reply, _, _, confirmed = pipe.execute(raise_on_error=False)
            if isinstance(reply, NoScriptError) and rerun < NOSCRIPT_RERUNS:
                continue  # the script did not run: the pipeline loads it again and re-runs
            if isinstance(reply, Exception):
                raise reply
            check_confirmation(confirmed, self.replicas)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover


def check_confirmation(confirmed: Any, replicas: int) -> None:
    """Raise unless ``confirmed`` (the reply of ``WAITAOF 1 replicas``) says the primary and ``replicas``
    replicas have fsynced: :class:`ConfigError` when the server cannot ``WAITAOF``, else
    :class:`NotReplicated`."""
    if isinstance(confirmed, redis.ResponseError):
        raise ConfigError(
            f"JOBS_ACK_REPLICAS={replicas} needs WAITAOF (Redis >= 7.2 or Valkey) and "
            f"appendonly yes on the primary and its replicas: {confirmed}"
        )
    if isinstance(confirmed, Exception):
        raise confirmed
    local, remote = (int(x) for x in confirmed)
    if local < 1 or remote < replicas:
        raise NotReplicated(replicas, remote, local)


def acknowledged_script(client: redis.Redis, script: str, settings: Settings, fence_key: str) -> Script:
    """``client.register_script(script)``, confirmed on ``JOBS_ACK_REPLICAS`` replicas when that is set."""
    if settings.ack_replicas > 0:
        return ReplicatedScript(client, script, settings, fence_key)
    return client.register_script(script)
