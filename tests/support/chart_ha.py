"""The Redis/Sentinel configuration the Helm chart renders for ``redis.mode=sentinel``, for tests that start
real servers from it (the failover scenario) and for the deploy contract checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy.manifests import Obj, find, one, pod_spec, render_chart


@dataclass(frozen=True)
class SentinelChartConfig:
    """What the chart gives the Redis and sentinel pods, and the services' settings it renders."""

    redis_conf: str
    sentinel_conf: str
    init_script: str
    redis_args: list[str]  # the Redis container's args after the config file ($(REDIS_PASSWORD) left in)
    sentinel_args: list[str]
    service_env: dict[str, str]  # the API/worker ConfigMap
    redis_replicas: int
    sentinel_replicas: int


def sentinel_config(objects: list[Obj]) -> SentinelChartConfig:
    """Read the sentinel-mode configuration out of rendered chart objects."""
    files = next(o for o in find(objects, "ConfigMap", "redis") if "redis.conf" in o["data"])["data"]
    redis_sts = one(objects, "StatefulSet", "redis")
    sentinel_sts = one(objects, "StatefulSet", "sentinel")
    redis_c = pod_spec(redis_sts)["containers"][0]  # type: ignore[index]
    sentinel_c = pod_spec(sentinel_sts)["containers"][0]  # type: ignore[index]
    return SentinelChartConfig(
        redis_conf=files["redis.conf"], sentinel_conf=files["sentinel.conf"], init_script=files["init.sh"],
        redis_args=list(redis_c["args"][1:]), sentinel_args=list(sentinel_c["args"][1:]),
        service_env=dict(one(objects, "ConfigMap", "config")["data"]),
        redis_replicas=int(redis_sts["spec"]["replicas"]), sentinel_replicas=int(sentinel_sts["spec"]["replicas"]),
    )


def render_sentinel_config(values: Mapping[str, Any] | None = None) -> SentinelChartConfig:
    """Render the chart with ``redis.mode=sentinel`` (plus ``values`` under ``redis.sentinel``)."""
    redis_values: dict[str, Any] = {"mode": "sentinel", "appendfsync": "always", "sentinel": dict(values or {})}
    return sentinel_config(render_chart({"redis": redis_values}))
