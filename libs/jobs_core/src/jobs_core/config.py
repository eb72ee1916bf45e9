"""Settings read from the environment and validated once, at start."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import urlsplit

from jobs_core.errors import ConfigError
from jobs_core.keys import Keys

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


#: Kubernetes object names: a DNS subdomain (pods) and a DNS label (namespaces), RFC 1123.
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Upper bounds shared with the API's validation of a submission (max_attempts, timeout).
MAX_ATTEMPTS_LIMIT = 100
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


N = TypeVar("N", int, float)


def _number(env: Mapping[str, str], name: str, default: N, minimum: N, maximum: N | None = None) -> N:
    """``name`` parsed as the type of ``default``, in ``minimum..maximum``; ``default`` when unset."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    kind = type(default)
    try:
        value = kind(raw.strip())
    except ValueError as e:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from e
    if not math.isfinite(value):  # float() takes "nan" and "inf", which no comparison below would catch
        raise ConfigError(f"{name} must be a finite number, got {raw.strip()!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    return _number(env, name, default, minimum, maximum)


def _float(
    env: Mapping[str, str], name: str, default: float, minimum: float = 0.0, maximum: float | None = None
) -> float:
    return _number(env, name, float(default), float(minimum), None if maximum is None else float(maximum))


def _port(env: Mapping[str, str], name: str) -> int | None:
    """A TCP port 1-65535, or None when unset."""
    if not env.get(name, "").strip():
        return None
    return _int(env, name, 0, 1, 65535)


def _bind(env: Mapping[str, str], default: str) -> str:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) or ``unix:PATH``: what gunicorn listens on."""
    value = env.get("JOBS_BIND", "").strip() or default
    if value.startswith("unix:") and len(value) > len("unix:"):
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or host == "[]":
        raise ConfigError(f"JOBS_BIND must be HOST:PORT (e.g. 127.0.0.1:8000) or unix:PATH, got {value!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(f"JOBS_BIND: write an IPv6 address in brackets, e.g. [::1]:8000; got {value!r}")
    return value


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """A password: any characters but control ones (a trailing newline from a Secret file is a mistake)."""
    value = env.get(name) or None
    if value is not None and _CONTROL.search(value):
        # never echo the value: it is a secret
        raise ConfigError(f"{name} contains a control character (a trailing newline from a file?)")
    return value


def _readable_file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name, "").strip()
    if not path:
        return None
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror}") from e
    return path


def _pod(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    """POD_NAME and POD_NAMESPACE (the downward API sets both): Kubernetes names, or both unset."""
    name, namespace = env.get("POD_NAME", "").strip() or None, env.get("POD_NAMESPACE", "").strip() or None
    if name is not None and not _DNS_SUBDOMAIN.match(name):
        raise ConfigError(f"POD_NAME must be a Kubernetes pod name (lowercase RFC 1123 subdomain), got {name!r}")
    if namespace is not None and not _DNS_LABEL.match(namespace):
        raise ConfigError(f"POD_NAMESPACE must be a Kubernetes namespace name (RFC 1123 label), got {namespace!r}")
    if (name is None) != (namespace is None):
        raise ConfigError("POD_NAME and POD_NAMESPACE must be set together (from the downward API)")
    return name, namespace


def _name(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not _NAME.match(value):
        raise ConfigError(f"{name} must be 1-64 characters of letters, digits, '_', '.', '-'; got {value!r}")
    return value


class Role(str, Enum):
    """What an API key may do; each role includes the ones before it."""

    VIEWER = "viewer"  # read its tenant's jobs, the tasks and the queues
    OPERATOR = "operator"  # and submit, cancel and retry its tenant's jobs
    ADMIN = "admin"  # and read every tenant's jobs, pause/resume queues and set their caps

    def __str__(self) -> str:
        return self.value

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True)
class ApiKey:
    """Who an API key speaks for: a tenant, with a role."""

    tenant: str
    role: Role = Role.OPERATOR


@dataclass(frozen=True)
class Settings:
    """Settings shared by the API and the worker (each reads the ones it needs)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str | None = None  # REDIS_PASSWORD overrides a password in REDIS_URL
    redis_tls_ca_file: str | None = None
    # Sentinel (REDIS_SENTINELS set): the primary is looked up from these instead of REDIS_URL's host
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "jobs"
    redis_sentinel_password: str | None = None
    redis_tls: bool = False  # TLS to the Redis servers found through Sentinel (rediss:// in REDIS_URL also sets it)
    redis_sentinel_tls: bool = False
    # replicated acknowledgement: answer only once WAITAOF confirms the write on this many replicas
    ack_replicas: int = 0
    ack_timeout_seconds: float = 1.0
    queue: str = "jobs"
    queues: tuple[str, ...] = ()  # what a worker consumes, in order; () = (queue,)
    key_prefix: str = "jobs"
    lease_seconds: float = 15.0
    reaper_interval_seconds: float = 5.0
    drain_seconds: float = 25.0
    result_ttl_seconds: int = 7 * 24 * 3600
    record_ttl_seconds: int = 14 * 24 * 3600
    idempotency_ttl_seconds: int = 24 * 3600
    history_seconds: int = 7 * 24 * 3600
    task_retention_seconds: int = 7 * 24 * 3600
    max_result_bytes: int = 16 * 1024 * 1024
    retry_backoff_seconds: float = 1.0
    retry_backoff_max_seconds: float = 300.0
    default_max_attempts: int = 3
    default_timeout_seconds: float = 3600.0
    task_modules: tuple[str, ...] = ()
    log_level: str = "INFO"
    # worker only
    concurrency: int = 1
    worker_metrics_port: int | None = None
    worker_health_file: str = "/tmp/jobs-worker.alive"
    pod_name: str | None = None
    pod_namespace: str | None = None
    # API only
    bind: str = "127.0.0.1:8000"
    web_concurrency: int = 2  # gunicorn worker processes
    api_threads: int = 8  # threads per gunicorn process
    api_streams: int = 0  # GET /events streams per process; 0 = api_threads // 4 (see jobs_api.slots)
    api_graceful_timeout: int = 30  # seconds requests in flight may finish after SIGTERM
    api_keys: Mapping[str, ApiKey] = field(default_factory=dict)  # key -> tenant and role
    max_body_bytes: int = 1024 * 1024
    max_pending: int = 100_000
    max_pending_per_tenant: int = 10_000
    #: longest ``Prefer: wait=N`` POST /jobs honours (a larger N is cut to it; 0 = never wait), jobs_api.prefer
    prefer_wait_max_seconds: int = 60
    # failed API-key authentication (console login and bearer keys), see jobs_api.ratelimit
    auth_failure_limit: int = 20  # failures per client address and per key prefix per window; 0 = no limit
    auth_failure_window_seconds: int = 300
    trusted_proxy_hops: int = 0  # proxies in front that append to X-Forwarded-For (ingress-nginx: 1)
    fast_submit: bool = True  # POST /jobs answered by jobs_api.fast_submit (off: by the Flask view alone)
    # schedules (tickers run in the API processes, see jobs_core.ticker)
    scheduler_enabled: bool = True
    schedule_tick_seconds: float = 1.0
    schedule_grace_seconds: float = 30.0
    max_schedules_per_tenant: int = 100
    schedules_file: str | None = None
    # webhooks (jobs_core.webhooks)
    webhooks_enabled: bool = True
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_retry_seconds: float = 5.0
    webhook_deadline_seconds: float = 86400.0
    webhook_secret_grace_seconds: float = 86400.0

    @property
    def keys(self) -> Keys:
        """Key names for this namespace and queue."""
        return Keys(self.key_prefix, self.queue)

    @property
    def worker_queues(self) -> tuple[str, ...]:
        """The queues a worker consumes, in strict order (``JOBS_QUEUES``, else ``JOBS_QUEUE`` alone)."""
        return self.queues or (self.queue,)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some settings changed."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and validate settings; raise :class:`ConfigError` with a clear message when one is bad."""
        env = os.environ if env is None else env
        url = env.get("REDIS_URL", "").strip() or cls.redis_url
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}")
        if parts.scheme != "unix" and not parts.hostname:
            raise ConfigError(f"REDIS_URL has no host: {url!r}")
        lease = _float(env, "JOBS_LEASE_SECONDS", cls.lease_seconds, 1.0)
        result_ttl = _int(env, "JOBS_RESULT_TTL_SECONDS", cls.result_ttl_seconds, 1)
        record_ttl = _int(env, "JOBS_RECORD_TTL_SECONDS", max(cls.record_ttl_seconds, result_ttl), 1)
        if record_ttl < result_ttl:
            raise ConfigError("JOBS_RECORD_TTL_SECONDS must be >= JOBS_RESULT_TTL_SECONDS")
        level = env.get("JOBS_LOG_LEVEL", "INFO").strip().upper() or "INFO"
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"JOBS_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level!r}")
        modules = tuple(m.strip() for m in env.get("JOBS_TASK_MODULES", "").split(",") if m.strip())
        pod_name, pod_namespace = _pod(env)
        _check_tracing(env)
        queues = parse_queues(env.get("JOBS_QUEUES", ""), "JOBS_QUEUES")
        tls = _flag(env, "REDIS_TLS", parts.scheme == "rediss")
        return cls(
            redis_url=url,
            redis_password=_secret(env, "REDIS_PASSWORD"),
            redis_tls_ca_file=_readable_file(env, "REDIS_TLS_CA_FILE"),
            redis_sentinels=parse_sentinels(env.get("REDIS_SENTINELS", "")),
            redis_sentinel_master=_name(env, "REDIS_SENTINEL_MASTER", cls.redis_sentinel_master),
            redis_sentinel_password=_secret(env, "REDIS_SENTINEL_PASSWORD"),
            redis_tls=tls,
            redis_sentinel_tls=_flag(env, "REDIS_SENTINEL_TLS", tls),
            ack_replicas=_int(env, "JOBS_ACK_REPLICAS", cls.ack_replicas, 0),
            ack_timeout_seconds=_ack_timeout(env),
            queue=_name(env, "JOBS_QUEUE", queues[0] if queues else cls.queue),
            queues=queues,
            key_prefix=_name(env, "JOBS_KEY_PREFIX", cls.key_prefix),
            lease_seconds=lease,
            reaper_interval_seconds=_float(
                env, "JOBS_REAPER_INTERVAL_SECONDS", min(cls.reaper_interval_seconds, lease), 0.1
            ),
            drain_seconds=_float(env, "JOBS_DRAIN_SECONDS", cls.drain_seconds, 0.0),
            result_ttl_seconds=result_ttl,
            record_ttl_seconds=record_ttl,
            idempotency_ttl_seconds=_int(env, "JOBS_IDEMPOTENCY_TTL_SECONDS", cls.idempotency_ttl_seconds, 1),
            history_seconds=_int(env, "JOBS_HISTORY_SECONDS", cls.history_seconds, 60),
            task_retention_seconds=_int(env, "JOBS_TASK_RETENTION_SECONDS", cls.task_retention_seconds, 1),
            max_result_bytes=_int(env, "JOBS_MAX_RESULT_BYTES", cls.max_result_bytes, 1),
            retry_backoff_seconds=_float(env, "JOBS_RETRY_BACKOFF_SECONDS", cls.retry_backoff_seconds, 0.0),
            retry_backoff_max_seconds=_float(
                env, "JOBS_RETRY_BACKOFF_MAX_SECONDS", cls.retry_backoff_max_seconds, 0.0
            ),
            default_max_attempts=_int(
                env, "JOBS_DEFAULT_MAX_ATTEMPTS", cls.default_max_attempts, 1, MAX_ATTEMPTS_LIMIT
            ),
            default_timeout_seconds=_float(
                env, "JOBS_DEFAULT_TIMEOUT_SECONDS", cls.default_timeout_seconds, 0.001, MAX_TIMEOUT_SECONDS
            ),
            task_modules=modules,
            log_level=level,
            concurrency=_int(env, "JOBS_CONCURRENCY", cls.concurrency, 1),
            worker_metrics_port=_port(env, "JOBS_WORKER_METRICS_PORT"),
            worker_health_file=env.get("JOBS_WORKER_HEALTH_FILE", "").strip() or cls.worker_health_file,
            pod_name=pod_name,
            pod_namespace=pod_namespace,
            bind=_bind(env, cls.bind),
            web_concurrency=_int(env, "WEB_CONCURRENCY", cls.web_concurrency, 1),
            api_threads=_int(env, "JOBS_API_THREADS", cls.api_threads, 1),
            api_streams=_int(env, "JOBS_API_STREAMS", cls.api_streams, 1),
            api_graceful_timeout=_int(env, "JOBS_API_GRACEFUL_TIMEOUT", cls.api_graceful_timeout, 0),
            api_keys=load_api_keys(env),
            max_body_bytes=_int(env, "JOBS_MAX_BODY_BYTES", cls.max_body_bytes, 1),
            prefer_wait_max_seconds=_int(env, "JOBS_PREFER_WAIT_MAX_SECONDS", cls.prefer_wait_max_seconds, 0, 600),
            max_pending=_int(env, "JOBS_MAX_PENDING", cls.max_pending, 1),
            max_pending_per_tenant=_int(env, "JOBS_MAX_PENDING_PER_TENANT", cls.max_pending_per_tenant, 1),
            auth_failure_limit=_int(env, "JOBS_AUTH_FAILURE_LIMIT", cls.auth_failure_limit, 0, 1_000_000),
            auth_failure_window_seconds=_int(env, "JOBS_AUTH_FAILURE_WINDOW_SECONDS",
                                             cls.auth_failure_window_seconds, 1, 86400),
            trusted_proxy_hops=_int(env, "JOBS_TRUSTED_PROXY_HOPS", cls.trusted_proxy_hops, 0, 5),
            fast_submit=_flag(env, "JOBS_FAST_SUBMIT", cls.fast_submit),
            scheduler_enabled=_flag(env, "JOBS_SCHEDULER", cls.scheduler_enabled),
            schedule_tick_seconds=_float(env, "JOBS_SCHEDULE_TICK_SECONDS", cls.schedule_tick_seconds, 0.01),
            schedule_grace_seconds=_float(env, "JOBS_SCHEDULE_GRACE_SECONDS", cls.schedule_grace_seconds, 0.0),
            max_schedules_per_tenant=_int(env, "JOBS_MAX_SCHEDULES_PER_TENANT", cls.max_schedules_per_tenant, 1),
            schedules_file=env.get("JOBS_SCHEDULES_FILE", "").strip() or None,
            webhooks_enabled=_flag(env, "JOBS_WEBHOOKS", cls.webhooks_enabled),
            webhook_allow_http=_flag(env, "JOBS_WEBHOOK_ALLOW_HTTP", cls.webhook_allow_http),
            webhook_allow_private=_flag(env, "JOBS_WEBHOOK_ALLOW_PRIVATE", cls.webhook_allow_private),
            webhook_timeout_seconds=_float(env, "JOBS_WEBHOOK_TIMEOUT_SECONDS", cls.webhook_timeout_seconds, 0.1, 60),
            webhook_retry_seconds=_float(env, "JOBS_WEBHOOK_RETRY_SECONDS", cls.webhook_retry_seconds, 0.1, 3600),
            webhook_deadline_seconds=_float(env, "JOBS_WEBHOOK_DEADLINE_SECONDS", cls.webhook_deadline_seconds, 1),
            webhook_secret_grace_seconds=_float(env, "JOBS_WEBHOOK_SECRET_GRACE_SECONDS",
                                                cls.webhook_secret_grace_seconds, 0),
        )


def parse_queues(text: str, source: str) -> tuple[str, ...]:
    """Queue names separated by commas (``gpu,default``), in order, each valid and given once."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if not _NAME.match(n):
            raise ConfigError(f"{source}: queue names are 1-64 letters, digits, '_', '.', '-'; got {n!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: a queue is given twice")
    return names


def is_queue_name(name: str) -> bool:
    """Whether ``name`` is a valid queue (and tenant) name."""
    return bool(_NAME.match(name))


#: Span exporters jobs_core.tracing ships (OTEL_TRACES_EXPORTER).
TRACE_EXPORTERS = ("otlp", "console", "none")


def _check_tracing(env: Mapping[str, str]) -> None:
    """The OpenTelemetry variables jobs_core.tracing reads: a typo must not silently turn tracing off."""
    _flag(env, "JOBS_TRACE_PARAMS", False)
    for raw in (env.get("OTEL_TRACES_EXPORTER") or "").split(","):
        name = raw.strip()
        if name and name.lower() not in TRACE_EXPORTERS:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: {name!r} is not shipped; use {', '.join(TRACE_EXPORTERS)}")
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        url = env.get(var, "").strip()
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            raise ConfigError(f"{var} must be an http:// or https:// URL, got {url!r}")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _ack_timeout(env: Mapping[str, str]) -> float:
    # below the client's 10 s socket timeout, so a slow WAITAOF is an answer (503), not a lost connection
    value = _float(env, "JOBS_ACK_TIMEOUT_SECONDS", Settings.ack_timeout_seconds, 0.001)
    if value > 5:
        raise ConfigError(f"JOBS_ACK_TIMEOUT_SECONDS must be <= 5, got {value}")
    return value


def parse_sentinels(text: str) -> tuple[tuple[str, int], ...]:
    """``host:port`` entries separated by commas (``[v6addr]:port`` too) into ``((host, port), ...)``."""
    out: list[tuple[str, int]] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"REDIS_SENTINELS entries must be host:port, got {entry!r}")
        out.append((host, int(port)))
    return tuple(out)


def parse_api_keys(text: str, source: str) -> dict[str, ApiKey]:
    """Parse ``tenant:key`` / ``tenant:key:role`` entries separated by commas or newlines into a map
    key -> :class:`ApiKey` (``tenant:key`` is the ``operator`` of its tenant, as before roles existed)."""
    result: dict[str, ApiKey] = {}
    for raw in re.split(r"[,\n]", text):
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        parts = [p.strip() for p in entry.split(":")]
        # never echo the entry nor any part of it: it holds a secret
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise ConfigError(f"{source}: every entry must be tenant:key or tenant:key:role (a key cannot hold ':')")
        tenant, key = parts[0], parts[1]
        if not _NAME.match(tenant):
            raise ConfigError(f"{source}: tenant names are 1-64 letters, digits, '_', '.', '-'")
        role = Role.OPERATOR
        if len(parts) == 3:
            try:
                role = Role(parts[2].lower())
            except ValueError:
                raise ConfigError(
                    f"{source}: the role after tenant:key: must be {', '.join(r.value for r in Role)}"
                ) from None
        if key in result:
            raise ConfigError(f"{source}: the same key is given twice")
        result[key] = ApiKey(tenant, role)
    return result


def load_api_keys(env: Mapping[str, str]) -> dict[str, ApiKey]:
    """API keys from ``JOBS_API_KEYS`` and/or the file named by ``JOBS_API_KEYS_FILE``."""
    api_keys = parse_api_keys(env.get("JOBS_API_KEYS", ""), "JOBS_API_KEYS")
    path = env.get("JOBS_API_KEYS_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as e:
            raise ConfigError(f"JOBS_API_KEYS_FILE: cannot read {path}: {e.strerror}") from e
        from_file = parse_api_keys(text, "JOBS_API_KEYS_FILE")
        if any(api_key in api_keys for api_key in from_file):  # which role would win is not for us to guess
            raise ConfigError("JOBS_API_KEYS_FILE: a key is also in JOBS_API_KEYS")
        api_keys.update(from_file)
    return api_keys
