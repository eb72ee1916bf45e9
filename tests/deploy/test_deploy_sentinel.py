"""redis.mode=sentinel: the rendered redis.conf / sentinel.conf hold what the services and the failover test
rely on, and the pods, Services, PDBs and NetworkPolicy fit together (issue 12)."""

from __future__ import annotations

import copy
import re

import pytest
from jobs_core.config import Settings, parse_sentinels
from support.chart_ha import sentinel_config
from support.valkey_ha import CHART_PLACEHOLDERS

from deploy.manifests import Obj, env_of, find, one, pod_labels, pod_spec, selector_matches

SENTINEL_SETS = ("sentinel", "sentinel-hard-spread")


def _directives(conf: str) -> dict[str, str]:
    """``name -> rest of line`` of a redis.conf (the last one wins, as for the server)."""
    out = {}
    for line in conf.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, rest = line.strip().partition(" ")
            out[name] = rest
    return out


def sentinel_violations(objects: list[Obj]) -> list[str]:
    """How the rendered Sentinel deployment disagrees with the services' settings and with itself."""
    out: list[str] = []
    cfg = sentinel_config(objects)
    redis_conf = _directives(cfg.redis_conf)
    if redis_conf.get("appendonly") != "yes":
        out.append("redis.conf: appendonly must be yes on every node (WAITAOF counts fsynced replicas)")
    args = cfg.redis_args
    for flag in ("--requirepass", "--masterauth"):
        if flag not in args or args[args.index(flag) + 1] != "$(REDIS_PASSWORD)":
            out.append(f"redis args: {flag} $(REDIS_PASSWORD) missing (replicas authenticate to the primary)")
    env = cfg.service_env
    settings = Settings.from_env(env)
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\S+) (\d+)$", cfg.sentinel_conf, flags=re.M)
    if monitor is None:
        return [*out, "sentinel.conf: no sentinel monitor line"]
    master, host, port, quorum = monitor.groups()
    if master != settings.redis_sentinel_master:
        out.append(f"sentinels monitor {master!r}, the services ask for {settings.redis_sentinel_master!r}")
    if (host, port) != ("__PRIMARY_HOST__", "__PRIMARY_PORT__"):
        out.append("sentinel monitor must name the primary through the init script's placeholders")
    placeholders = set(re.findall(r"__[A-Z_]+__", cfg.sentinel_conf + cfg.redis_conf))
    if placeholders != set(CHART_PLACEHOLDERS):
        out.append(f"placeholders {sorted(placeholders)} are not those the failover test fills {CHART_PLACEHOLDERS}")
    if any(p not in cfg.init_script for p in placeholders):
        out.append("init.sh does not replace every placeholder")
    if "sentinel auth-pass" not in cfg.init_script or "requirepass" not in cfg.init_script:
        out.append("init.sh must give the sentinels the Redis password and require it")
    if not 0 < int(quorum) <= cfg.sentinel_replicas:
        out.append(f"quorum {quorum} vs {cfg.sentinel_replicas} sentinels")
    for name in ("down-after-milliseconds", "failover-timeout", "parallel-syncs"):
        if not re.search(rf"^sentinel {name} {re.escape(master)} \d+$", cfg.sentinel_conf, flags=re.M):
            out.append(f"sentinel.conf: no {name} for {master}")
    if not 0 < settings.ack_replicas < cfg.redis_replicas:
        out.append(f"JOBS_ACK_REPLICAS {settings.ack_replicas} must be 1..{cfg.redis_replicas - 1} (replicas)")
    sentinel_sts = one(objects, "StatefulSet", "sentinel")
    service = one(objects, "Service", "sentinel")
    wanted = [(f"{sentinel_sts['metadata']['name']}-{i}.{service['metadata']['name']}.jobs.svc.cluster.local", 26379)
              for i in range(cfg.sentinel_replicas)]
    if list(parse_sentinels(env.get("REDIS_SENTINELS", ""))) != wanted:
        out.append(f"REDIS_SENTINELS {env.get('REDIS_SENTINELS')} are not the sentinel pods {wanted}")
    for component in ("api", "worker"):
        container = pod_spec(one(objects, "Deployment", component))["containers"][0]  # type: ignore[index]
        if "REDIS_SENTINEL_PASSWORD" not in env_of(container, objects):
            out.append(f"{component}: no REDIS_SENTINEL_PASSWORD (the sentinels require one)")
    for kind, component in (("StatefulSet", "redis"), ("StatefulSet", "sentinel")):
        sts = one(objects, kind, component)
        labels = pod_labels(sts)
        pdbs = [p for p in find(objects, "PodDisruptionBudget")
                if selector_matches(p["spec"]["selector"]["matchLabels"], labels)]
        if [p["spec"].get("maxUnavailable") for p in pdbs] != [1]:
            out.append(f"{component}: needs one PDB with maxUnavailable 1")
        affinity = pod_spec(sts).get("affinity", {}).get("podAntiAffinity")  # type: ignore[union-attr]
        if not affinity:
            out.append(f"{component}: no pod anti-affinity")
    if component_peers(objects) != {"api", "worker", "redis", "sentinel"}:
        out.append(f"Redis/sentinel NetworkPolicy lets in {component_peers(objects)}")
    return out


def component_peers(objects: list[Obj]) -> set[str]:
    """Components the Redis/sentinel NetworkPolicy lets in from the release's namespace."""
    policy = one(objects, "NetworkPolicy", "sentinel")
    peers = [p for rule in policy["spec"]["ingress"] for p in rule["from"] if "namespaceSelector" not in p]
    return {p["podSelector"]["matchLabels"].get("app.kubernetes.io/component", "*") for p in peers}


@pytest.mark.parametrize("value_set", SENTINEL_SETS)
def test_sentinel_deployment_fits_the_services(rendered: dict[str, list[Obj]], value_set: str) -> None:
    assert sentinel_violations(rendered[value_set]) == []


BREAKAGES = {
    "no-aof": lambda cm: cm["data"].__setitem__("redis.conf", cm["data"]["redis.conf"].replace("appendonly yes",
                                                                                              "appendonly no")),
    "other-master": lambda cm: cm["data"].__setitem__("sentinel.conf", cm["data"]["sentinel.conf"].replace(
        "sentinel monitor jobs", "sentinel monitor other")),
    "hardcoded-primary": lambda cm: cm["data"].__setitem__("sentinel.conf", cm["data"]["sentinel.conf"].replace(
        "__PRIMARY_HOST__", "redis-0")),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_sentinel_contract_catches_drift(rendered: dict[str, list[Obj]], breakage: str) -> None:
    objects = copy.deepcopy(rendered["sentinel"])
    cm = next(o for o in find(objects, "ConfigMap", "redis") if "redis.conf" in o["data"])
    BREAKAGES[breakage](cm)
    assert sentinel_violations(objects)


def test_external_sentinels_reach_the_services_and_keda(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["external-sentinel"]
    assert not find(objects, "StatefulSet")
    env = one(objects, "ConfigMap", "config")["data"]
    assert env["REDIS_SENTINELS"] == "sentinel-0.redis.example:26379,sentinel-1.redis.example:26379"
    assert (env["REDIS_SENTINEL_MASTER"], env["REDIS_TLS"]) == ("managed", "true")
    assert "REDIS_URL" not in env
    for trigger in one(objects, "ScaledObject")["spec"]["triggers"]:
        assert trigger["type"] == "redis-sentinel"
        assert trigger["metadata"]["sentinelMaster"] == "managed" and trigger["metadata"]["enableTLS"] == "true"


def test_sentinel_mode_checks_its_sizes() -> None:
    import helm_python as helm

    from deploy.manifests import render_chart

    for bad in ({"ackReplicas": 3}, {"quorum": 4}):
        with pytest.raises(helm.HelmRenderError):
            render_chart({"redis": {"mode": "sentinel", "sentinel": bad}})
