"""Contracts between the manifests and the code: Redis key names KEDA watches, env var names, and the
selectors/names that tie the objects together."""

from __future__ import annotations

import ast
import copy
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from jobs_core import config as config_module
from jobs_core.config import Settings
from jobs_core.keys import Keys

from deploy.manifests import (
    REPO,
    VALUE_SETS,
    Obj,
    build_overlay,
    by_name,
    env_of,
    find,
    one,
    pod_labels,
    pod_spec,
    render_chart,
    selector_matches,
    workloads,
)

_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]{2,}$")


def _source_files() -> list[Path]:
    """Where the services read their environment: the shared settings, the API's gunicorn config
    (WEB_CONCURRENCY), the tracing setup (OTEL_*, JOBS_TRACE_PARAMS) and the console's settings
    (JOBS_UI_*). Located without importing (importing the gunicorn config has side effects)."""
    spec = importlib.util.find_spec("jobs_api.gunicorn_conf")
    assert spec is not None and spec.origin, "jobs_api.gunicorn_conf not installed"
    tracing = importlib.util.find_spec("jobs_core.tracing")
    assert tracing is not None and tracing.origin, "jobs_core.tracing not installed"
    console = importlib.util.find_spec("jobs_api.console.session")
    assert console is not None and console.origin, "jobs_api.console not installed"
    return [Path(config_module.__file__), Path(spec.origin), Path(tracing.origin), Path(console.origin)]


def env_names_read_by_the_code() -> set[str]:
    """Every env var name the services read: the string constants passed to calls (``env.get``,
    ``os.environ.get`` and the ``_int``/``_float``/``_name`` readers) in those modules, parsed, not copied."""
    names = set()
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _ENV_NAME.match(arg.value):
                        names.add(arg.value)
    return names


def test_the_env_name_scan_finds_the_documented_settings() -> None:
    names = env_names_read_by_the_code()
    assert {"REDIS_URL", "REDIS_PASSWORD", "JOBS_QUEUE", "JOBS_KEY_PREFIX", "JOBS_DRAIN_SECONDS", "POD_NAME",
            "POD_NAMESPACE", "JOBS_BIND", "JOBS_API_KEYS_FILE", "JOBS_CONCURRENCY", "WEB_CONCURRENCY"} <= names
    assert not {"REDIS_ADDRESS", "JOBS_QUEUE_NAME"} & names


def _our_containers(objects: list[Obj]) -> list[tuple[str, Obj]]:
    """Containers running our images (the Redis container reads redis-server's own settings)."""
    out = []
    for obj in workloads(objects):
        for container in (pod_spec(obj) or {}).get("containers", []):
            image = container["image"].rpartition(":")[0]
            # a pool's own task image (FROM jobs-worker) runs the container named `worker`
            if image.endswith(("jobs-api", "jobs-worker")) or container["name"] in ("api", "worker"):
                out.append((f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}", container))
    return out


#: Prefixes of the services' own settings. Worker containers may also carry other names: the task code's
#: environment (``worker.extraEnv``); a name in our own namespace must still be one the code reads.
OUR_PREFIXES = ("JOBS_", "REDIS_", "WEB_", "POD_")


def unknown_env_names(objects: list[Obj]) -> list[str]:
    """Env var names our containers get that no service reads."""
    allowed = env_names_read_by_the_code()
    return [f"{where}: {name}" for where, c in _our_containers(objects) for name in env_of(c, objects)
            if name not in allowed and (name.startswith(OUR_PREFIXES) or c["name"] != "worker")]


def test_every_env_var_in_the_manifests_is_read_by_the_services(all_sources: dict[str, list[Obj]]) -> None:
    problems = []
    for source, objects in all_sources.items():
        assert _our_containers(objects), source
        problems += [f"{source} {p}" for p in unknown_env_names(objects)]
    assert problems == []


def test_an_unknown_env_var_is_caught(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["defaults"])
    one(objects, "ConfigMap", "config")["data"]["JOBS_QUEUE_NAME"] = "oops"
    assert unknown_env_names(objects) == [
        f"Deployment/{d['metadata']['name']}/{c}: JOBS_QUEUE_NAME"
        for d, c in ((one(objects, "Deployment", "api"), "api"), (one(objects, "Deployment", "worker"), "worker"))
    ]


# --- KEDA -----------------------------------------------------------------------------------------


def _worker_env(objects: list[Obj]) -> dict[str, object]:
    worker = one(objects, "Deployment", "worker")
    return env_of(pod_spec(worker)["containers"][0], objects)  # type: ignore[index]


def pool_scalers(objects: list[Obj]) -> list[tuple[Obj, Obj]]:
    """(workload, KEDA object) per autoscaled worker pool: a ScaledObject and the Deployment it targets,
    or a ScaledJob (its own workload)."""
    out = []
    for scaled in find(objects, "ScaledObject"):
        target = by_name(objects, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])
        assert target is not None, f"ScaledObject {scaled['metadata']['name']} targets no rendered Deployment"
        out.append((target, scaled))
    out += [(job, job) for job in find(objects, "ScaledJob")]
    return out


def pool_queues(env: dict[str, object]) -> list[str]:
    """The queues a worker with this environment consumes (JOBS_QUEUES, else JOBS_QUEUE), as the code
    reads them."""
    settings = Settings.from_env({"REDIS_URL": "redis://x"} | {k: v for k, v in env.items() if isinstance(v, str)})
    return list(settings.worker_queues)


def expected_lists(env: dict[str, object]) -> list[str]:
    """Every key KEDA must count for a worker with this environment: each waiting list (every priority)
    and the leases zset (running jobs) of each of its queues, named by jobs_core.keys.Keys."""
    prefix = str(env.get("JOBS_KEY_PREFIX", Settings.key_prefix))
    out: list[str] = []
    for queue in pool_queues(env):
        keys = Keys(prefix, queue)
        out += [*keys.waiting_lists, keys.leases]
    return out


def keda_violations(objects: list[Obj]) -> list[str]:
    """How each pool's ScaledObject/ScaledJob and the TriggerAuthentication disagree with the pool's workers
    and the code's key names."""
    out: list[str] = []
    pools = pool_scalers(objects)
    if not pools:
        return ["no ScaledObject or ScaledJob"]
    for workload, scaled in pools:
        out += [f"{scaled['kind']}/{scaled['metadata']['name']}: {v}" for v in _pool_violations(workload, scaled,
                                                                                                  objects)]
    password = _worker_env(objects).get("REDIS_PASSWORD") if find(objects, "Deployment", "worker") else None
    if not password and find(objects, "TriggerAuthentication"):
        out.append("TriggerAuthentication without a Redis password")
    return out


def _pool_violations(workload: Obj, scaled: Obj, objects: list[Obj]) -> list[str]:
    out: list[str] = []
    spec = scaled["spec"]
    container = next(c for c in pod_spec(workload)["containers"] if c["name"] == "worker")  # type: ignore[index]
    env = env_of(container, objects)
    if not 0 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"]:
        out.append("minReplicaCount/maxReplicaCount out of order")
    triggers = {t.get("name"): t for t in spec["triggers"]}
    sentinels = env.get("REDIS_SENTINELS")
    kind = "redis-sentinel" if sentinels else "redis"  # behind Sentinel, KEDA asks the sentinels as the pods do
    if len(triggers) != len(spec["triggers"]) or None in triggers:
        out.append("every trigger needs its own name")
    lists = sorted(t["metadata"]["listName"] for t in spec["triggers"] if t["type"] == kind)
    wanted = sorted(expected_lists(env))
    if lists != wanted:
        out.append(f"redis trigger lists {lists} are not the pool's waiting lists + leases zsets {wanted}")
    concurrency = str(env.get("JOBS_CONCURRENCY", Settings.concurrency))
    running = {Keys(str(env.get("JOBS_KEY_PREFIX", Settings.key_prefix)), q).leases for q in pool_queues(env)}
    if scaled["kind"] == "ScaledObject":
        modifiers = spec.get("advanced", {}).get("scalingModifiers", {})
        formula = modifiers.get("formula", "")
        terms = [t.strip() for t in formula.split("+")]
        if sorted(terms) != sorted(map(str, triggers)):
            out.append(f"formula {formula!r} must add up exactly the triggers {sorted(map(str, triggers))}")
        if not running <= {t["metadata"]["listName"] for n, t in triggers.items() if n in terms}:
            out.append("the leases zsets must count in the formula (scale-in never treats running work as idle)")
        if modifiers.get("target") != concurrency:
            out.append(f"scalingModifiers.target {modifiers.get('target')!r} != JOBS_CONCURRENCY {concurrency}")
    else:
        strategy = spec.get("scalingStrategy", {})
        if strategy.get("multipleScalersCalculation") != "sum":
            out.append("a ScaledJob must sum its triggers (waiting of every priority + running)")
        if {t["metadata"].get("listLength") for t in spec["triggers"]} != {"1"}:
            out.append("a ScaledJob pod runs one job: every trigger's listLength must be 1")
        if container.get("args") != ["--once"]:
            out.append(f"ScaledJob pods must run `jobs-worker --once`, got args {container.get('args')}")
    out += _auth_and_address_violations(scaled, env, objects)
    return out


def _auth_and_address_violations(scaled: Obj, env: dict[str, object], objects: list[Obj]) -> list[str]:
    out = []
    password = env.get("REDIS_PASSWORD")
    for trigger in scaled["spec"]["triggers"]:
        ref = trigger.get("authenticationRef", {}).get("name")
        auth = by_name(objects, "TriggerAuthentication", ref) if ref else None
        if password and auth is None:
            out.append(f"trigger {trigger.get('name')} has no TriggerAuthentication while Redis has a password")
        if auth:
            targets = {(r["parameter"], r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
            wanted = {("password", password["secretKeyRef"]["name"], password["secretKeyRef"]["key"])}  # type: ignore[index]
            sentinel_password = env.get("REDIS_SENTINEL_PASSWORD")
            if sentinel_password:
                ref = sentinel_password["secretKeyRef"]  # type: ignore[index]
                wanted.add(("sentinelPassword", ref["name"], ref["key"]))
            if targets != wanted:
                out.append(f"TriggerAuthentication reads {targets}, the pods read {wanted}")
    # the operator runs in another namespace: the address must be the Redis Service's FQDN there
    redis_services = find(objects, "Service", "redis")
    sentinels = env.get("REDIS_SENTINELS")
    for trigger in scaled["spec"]["triggers"]:
        if sentinels:
            meta = trigger["metadata"]
            if meta.get("addresses") != sentinels or meta.get("sentinelMaster") != env.get("REDIS_SENTINEL_MASTER"):
                pods_master = env.get("REDIS_SENTINEL_MASTER")
                out.append(f"trigger {trigger.get('name')} asks {meta.get('addresses')} for "
                           f"{meta.get('sentinelMaster')}, the pods ask {sentinels} for {pods_master}")
            if any(not h.endswith(".svc.cluster.local:26379") for h in str(sentinels).split(",")) and redis_services:
                out.append(f"in-chart sentinel addresses {sentinels} are not fully qualified (KEDA runs elsewhere)")
            continue
        host, _, port = trigger["metadata"]["address"].rpartition(":")
        if redis_services:
            svc = redis_services[0]["metadata"]["name"]
            ns = scaled["metadata"].get("namespace")
            if host != f"{svc}.{ns}.svc.cluster.local" or port != "6379":
                out.append(f"address {host}:{port} is not {svc}.{ns}.svc.cluster.local:6379")
        elif host not in str(env.get("REDIS_URL")):
            out.append(f"address host {host} is not the REDIS_URL host")
    return out


def _with_autoscaling(all_sources: dict[str, list[Obj]]) -> list[str]:
    return [s for s, objects in all_sources.items() if find(objects, "ScaledObject") or find(objects, "ScaledJob")]


def test_keda_watches_the_lists_the_code_uses(all_sources: dict[str, list[Obj]]) -> None:
    """Per pool: the triggers are exactly the waiting lists (every priority) and leases zsets of the
    pool's queues as jobs_core.keys.Keys names them (DESIGN-queues.md), summed."""
    sources = _with_autoscaling(all_sources)
    assert {"helm:defaults", "helm:prod-sizing", "helm:pools", "kustomize:dev", "kustomize:prod",
            "kustomize:gpu"} <= set(sources)
    problems = [f"{s}: {v}" for s in sources for v in keda_violations(all_sources[s])]
    assert problems == []


def test_keda_follows_a_custom_queue_and_prefix(rendered: dict[str, list[Obj]]) -> None:
    scaled = one(rendered["prod-sizing"], "ScaledObject")  # queue emails, prefix acme, concurrency 4
    keys = Keys("acme", "emails")
    assert sorted(t["metadata"]["listName"] for t in scaled["spec"]["triggers"]) == sorted(
        [*keys.waiting_lists, keys.leases])
    assert len(scaled["spec"]["triggers"]) == 11  # 10 priorities + running
    assert scaled["spec"]["advanced"]["scalingModifiers"]["target"] == "4"


def test_running_trigger_is_the_leases_zset_and_counts_running_jobs(
    all_sources: dict[str, list[Obj]], settings: Settings
) -> None:
    """Every pool's running triggers name its queues' leases zsets (one member per running job: the record
    of running work since no claim writes the in-flight list), every ScaledObject / ScaledJob still
    validates against KEDA's CRD schema in the repo, and what KEDA's redis scaler reads from the key
    (TYPE, then that type's length command: ZCARD for a zset) is the number of running jobs."""
    from jobs_core.delivery import Finish
    from jobs_core.model import Result
    from jobs_core.store import JobStore

    from deploy.test_deploy_schemas import K8S_VERSIONS, validate_object

    checked = 0
    for source, objects in all_sources.items():
        for workload, scaled in pool_scalers(objects):
            container = next(c for c in pod_spec(workload)["containers"] if c["name"] == "worker")  # type: ignore[index]
            env = env_of(container, objects)
            prefix = str(env.get("JOBS_KEY_PREFIX", Settings.key_prefix))
            running = [t["metadata"]["listName"] for t in scaled["spec"]["triggers"] if t["name"].endswith("_running")]
            assert running == [Keys(prefix, q).leases for q in pool_queues(env)], source
            assert validate_object(scaled, K8S_VERSIONS[0]) == [], source
            checked += 1
    assert checked >= 6
    store = JobStore.from_settings(settings)
    r = store.redis
    lengths = {"zset": r.zcard, "list": r.llen, "set": r.scard, "hash": r.hlen, "none": r.llen}

    def keda_reads(key: str) -> int:
        return int(lengths[r.type(key).decode()](key))

    assert keda_reads(store.keys.leases) == 0
    ids = [store.enqueue("echo", {"i": i})[0].id for i in range(3)]
    claimed = store.claim("w", 2)
    assert keda_reads(store.keys.leases) == 2 and r.type(store.keys.leases) == b"zset"
    store.finish_and_claim("w", [Finish(claimed[0].id, 1, "succeeded", Result(b"1", "application/json"))], 1)
    assert keda_reads(store.keys.leases) == 2  # one ended, the third began
    assert {m.decode() for m in r.zrange(store.keys.leases, 0, -1)} == {claimed[1].id, ids[2]}


def test_each_pool_scales_on_its_own_queues_only(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["pools"]
    by_pool = {w["metadata"]["labels"]["jobs-api/pool"]: (w, s) for w, s in pool_scalers(objects)}
    assert set(by_pool) == {"default", "gpu", "render"}
    lists = {name: {t["metadata"]["listName"] for t in s["spec"]["triggers"]} for name, (_, s) in by_pool.items()}
    assert lists["gpu"] == {*Keys("jobs", "gpu").waiting_lists, Keys("jobs", "gpu").leases}
    assert lists["default"] == {*Keys("jobs", "jobs").waiting_lists, Keys("jobs", "jobs").leases}
    assert len(lists["render"]) == 22  # two queues
    assert not lists["gpu"] & lists["default"] and not lists["render"] & (lists["gpu"] | lists["default"])
    # nothing counts delayed or paused jobs
    every = set().union(*lists.values())
    for queue in ("jobs", "gpu", "render", "render-low"):
        keys = Keys("jobs", queue)
        assert keys.delayed not in every and not set(keys.paused_lists) & every


@pytest.mark.parametrize(
    "breakage",
    ["wrong-list", "stale-queue", "no-running-trigger", "missing-priority", "paused-counted",
     "formula-ignores-running", "target", "auth-key", "address"],
)
def test_keda_contract_catches_drift(rendered: dict[str, list[Obj]], breakage: str) -> None:
    objects = copy.deepcopy(rendered["defaults"])
    assert keda_violations(objects) == []
    spec = one(objects, "ScaledObject")["spec"]
    running = next(t for t in spec["triggers"] if t["metadata"]["listName"].endswith(":leases"))
    if breakage == "wrong-list":
        running["metadata"]["listName"] = "jobs:jobs:inflight"  # the list of before: nothing writes it
    elif breakage == "stale-queue":
        one(objects, "ConfigMap", "config")["data"]["JOBS_QUEUE"] = "emails"
    elif breakage == "no-running-trigger":
        spec["triggers"].remove(running)
        spec["advanced"]["scalingModifiers"]["formula"] = " + ".join(t["name"] for t in spec["triggers"])
    elif breakage == "missing-priority":
        dropped = spec["triggers"].pop(0)
        spec["advanced"]["scalingModifiers"]["formula"] = " + ".join(t["name"] for t in spec["triggers"])
        assert dropped["metadata"]["listName"].startswith("hotqueue:")
    elif breakage == "paused-counted":
        extra = copy.deepcopy(running)
        extra["name"], extra["metadata"]["listName"] = "paused", Keys("jobs", "jobs").paused_lists[0]
        spec["triggers"].append(extra)
        spec["advanced"]["scalingModifiers"]["formula"] += " + paused"
    elif breakage == "formula-ignores-running":
        spec["advanced"]["scalingModifiers"]["formula"] = " + ".join(
            t["name"] for t in spec["triggers"] if t is not running)
    elif breakage == "target":
        spec["advanced"]["scalingModifiers"]["target"] = "5"
    elif breakage == "auth-key":
        one(objects, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["key"] = "password"
    elif breakage == "address":
        for trigger in spec["triggers"]:
            trigger["metadata"]["address"] = "redis:6379"
    assert keda_violations(objects)


@pytest.mark.parametrize("breakage", ["not-once", "max-calculation", "target-per-pod"])
def test_keda_contract_catches_a_broken_scaled_job(rendered: dict[str, list[Obj]], breakage: str) -> None:
    objects = copy.deepcopy(rendered["pools"])
    assert keda_violations(objects) == []
    job = one(objects, "ScaledJob")
    if breakage == "not-once":
        pod_spec(job)["containers"][0].pop("args")  # type: ignore[index]
    elif breakage == "max-calculation":
        job["spec"]["scalingStrategy"]["multipleScalersCalculation"] = "max"
    elif breakage == "target-per-pod":
        job["spec"]["triggers"][0]["metadata"]["listLength"] = "4"
    assert keda_violations(objects)


def test_job_pools_run_once_and_the_cli_accepts_it(rendered: dict[str, list[Obj]]) -> None:
    """`mode: job` pods run `jobs-worker --once`: the worker's own parser must accept it."""
    from jobs_worker.cli import _parser

    (job,) = find(rendered["pools"], "ScaledJob")
    args = pod_spec(job)["containers"][0]["args"]  # type: ignore[index]
    assert _parser().parse_args(args).once is True
    assert pod_spec(job)["restartPolicy"] == "Never"  # type: ignore[index]


# --- wiring: selectors, names, namespaces --------------------------------------------------------------


def _policy_violations(objects: list[Obj]) -> list[str]:
    out = []
    pods = {component: pod_labels(one(objects, kind, component))
            for kind, component in (("Deployment", "api"), ("Deployment", "worker"), ("StatefulSet", "redis"))}
    # every worker pool (Deployments and ScaledJobs running a `worker` container)
    pods |= {component(w): pod_labels(w) for w in workloads(objects)
             if any(c["name"] == "worker" for c in pod_spec(w)["containers"])}  # type: ignore[index]
    redis_np = one(objects, "NetworkPolicy", "redis")
    if not selector_matches(redis_np["spec"]["podSelector"]["matchLabels"], pods["redis"]):
        out.append("redis policy does not select the Redis pods")
    peers = [p for rule in redis_np["spec"]["ingress"] for p in rule["from"]]
    local = [p["podSelector"].get("matchLabels", {}) for p in peers if "namespaceSelector" not in p]
    for name in pods:
        if name != "redis" and not any(selector_matches(sel, pods[name]) for sel in local):
            out.append(f"{name} pods cannot reach Redis")
    if any(selector_matches(sel, pods["redis"]) or not sel for sel in local):
        out.append("redis policy lets other pods in")
    others = [p for p in peers if "namespaceSelector" in p]
    if any(p["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name") != "keda" for p in others):
        out.append("only the KEDA operator namespace may reach Redis from outside")
    api_np = one(objects, "NetworkPolicy", "api")
    if not selector_matches(api_np["spec"]["podSelector"]["matchLabels"], pods["api"]):
        out.append("api policy does not select the API pods")
    api_peers = [p for rule in api_np["spec"]["ingress"] for p in rule["from"]]
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in api_peers if "namespaceSelector" in p]
    allowed = [{"kubernetes.io/metadata.name": "ingress-nginx"}]
    if find(objects, "ServiceMonitor"):
        allowed.append({"kubernetes.io/metadata.name": "monitoring"})
    if namespaces != allowed:
        out.append(f"the API must be reachable from {allowed} only, got {namespaces}")
    for name in pods:
        if name != "api" and any(selector_matches(p.get("podSelector", {}).get("matchLabels", {}), pods[name])
                                 for p in api_peers):
            out.append(f"{name} pods may call the API")
    return out


@pytest.mark.parametrize(
    "source", ["helm:defaults", "helm:prod-sizing", "helm:ingress-tls", "helm:pools", "kustomize:dev",
               "kustomize:prod", "kustomize:gpu"]
)
def test_network_policies_fence_redis_and_the_api(all_sources: dict[str, list[Obj]], source: str) -> None:
    assert _policy_violations(all_sources[source]) == []


def test_network_policy_check_catches_an_open_redis(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["defaults"])
    one(objects, "NetworkPolicy", "redis")["spec"]["ingress"][0]["from"].append({"podSelector": {}})
    assert _policy_violations(objects)


def test_helm_test_pod_is_let_through_the_api_policy(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["defaults"]
    pod = next(o for o in objects if o["kind"] == "Pod")
    api_np = one(objects, "NetworkPolicy", "api")
    selectors = [p["podSelector"]["matchLabels"] for r in api_np["spec"]["ingress"] for p in r["from"]
                 if "podSelector" in p and "namespaceSelector" not in p]
    assert any(selector_matches(s, pod_labels(pod)) for s in selectors)


def _user_env_sources(source: str) -> set[str]:
    """ConfigMaps/Secrets a value set brings itself for task code (worker.envFrom)."""
    values = VALUE_SETS.get(source.removeprefix("helm:"), {}) if source.startswith("helm:") else {}
    return {(s.get("configMapRef") or s.get("secretRef"))["name"] for s in values.get("worker", {}).get("envFrom", [])}


def test_every_referenced_object_is_rendered(all_sources: dict[str, list[Obj]]) -> None:
    """ConfigMaps, Secrets and ServiceAccounts the pods name exist (prod takes its Secrets from outside)."""
    for source, objects in all_sources.items():
        external = source in ("kustomize:prod", "kustomize:gpu", "helm:existing-secrets", "helm:external-redis",
                              "helm:sentinel-hard-spread", "helm:external-sentinel")
        for obj in workloads(objects):
            spec = pod_spec(obj) or {}
            account = spec.get("serviceAccountName")
            assert account is None or by_name(objects, "ServiceAccount", account), (source, account)
            for container in spec.get("containers", []):
                for source_ref in container.get("envFrom", []):
                    name = (source_ref.get("configMapRef") or source_ref.get("secretRef"))["name"]
                    if name not in _user_env_sources(source):
                        kind = "ConfigMap" if "configMapRef" in source_ref else "Secret"
                        assert by_name(objects, kind, name), (source, kind, name)
                for item in container.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref and not external:
                        secret = by_name(objects, "Secret", ref["name"])
                        assert secret and ref["key"] in secret["data"], (source, ref)


def test_skaffold_port_forwards_the_api_service() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    release = config["deploy"]["helm"]["releases"][0]
    # render with skaffold's release name: object names derive from it
    objects = render_chart({}, name=release["name"], namespace=release["namespace"])
    (forward,) = config["portForward"]
    service = by_name(objects, "Service", forward["resourceName"])
    assert service is not None and component(service) == "api"
    assert forward["namespace"] == release["namespace"]
    assert forward["port"] == service["spec"]["ports"][0]["port"]
    profile = next(p for p in config["profiles"] if p["name"] == "kustomize")
    (path,) = profile["manifests"]["kustomize"]["paths"]
    overlay = build_overlay(Path(path).name)
    (forward,) = profile["portForward"]
    service = by_name(overlay, "Service", forward["resourceName"])
    assert service is not None and service["metadata"]["namespace"] == forward["namespace"]
    assert forward["port"] == service["spec"]["ports"][0]["port"]


def component(obj: Obj) -> str:
    """The component label."""
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


# --- the worker's RBAC against what the worker code calls ---------------------------------------------

#: kubernetes-client CoreV1Api method prefix -> the RBAC verb it needs
_CLIENT_VERBS = {"read": "get", "list": "list", "patch": "patch", "replace": "update", "create": "create",
                 "delete": "delete", "connect": "create"}


def pod_verbs_the_worker_uses() -> set[str]:
    """RBAC verbs on pods the worker's Kubernetes calls need, from the ``*_namespaced_pod*`` methods its
    code calls (parsed from jobs_worker's modules, not copied)."""
    spec = importlib.util.find_spec("jobs_worker")
    assert spec is not None and spec.submodule_search_locations
    verbs = set()
    for path in Path(next(iter(spec.submodule_search_locations))).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and re.fullmatch(r"[a-z]+_namespaced_pod(_[a-z_]+)?", node.attr):
                verbs.add(_CLIENT_VERBS[node.attr.split("_", 1)[0]])
    return verbs


def test_the_worker_role_grants_exactly_the_verbs_the_worker_uses(all_sources: dict[str, list[Obj]]) -> None:
    """Issue 10 #7: the Role gave `get` too, to pods that run user task code; the worker only PATCHes its
    own pod's deletion-cost annotation."""
    assert pod_verbs_the_worker_uses() == {"patch"}
    for source, objects in all_sources.items():
        for role in find(objects, "Role"):
            assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"],
                                      "verbs": sorted(pod_verbs_the_worker_uses())}], source


def test_pod_deletion_cost_off_leaves_task_pods_without_kubernetes_access(rendered: dict[str, list[Obj]]) -> None:
    """worker.podDeletionCost=false: no Role or RoleBinding, no API token mounted, and the worker is not
    told its pod name (so it never tries to patch)."""
    objects = rendered["minimal-no-ingress"]
    assert not find(objects, "Role") and not find(objects, "RoleBinding")
    worker = one(objects, "Deployment", "worker")
    spec = pod_spec(worker)
    assert spec is not None and spec["automountServiceAccountToken"] is False
    assert not {"POD_NAME", "POD_NAMESPACE"} & set(env_of(spec["containers"][0], objects))
    assert pod_spec(one(rendered["defaults"], "Deployment", "worker")).get("automountServiceAccountToken") is None  # type: ignore[union-attr]


# --- images the overlays deploy -------------------------------------------------------------------------


def _our_images(objects: list[Obj]) -> set[str]:
    return {c["image"] for _, c in _our_containers(objects)}


def test_prod_overlay_pulls_from_a_registry() -> None:
    """Issue 10 #2: `jobs-api:0.1.0` resolves to a Docker Hub library image that does not exist."""
    for image in _our_images(build_overlay("prod")):
        name = image.rpartition(":")[0]
        assert "/" in name and "." in name.split("/", 1)[0], f"{image} names no registry"
    kustomization = yaml.safe_load((REPO / "k8s/overlays/prod/kustomization.yaml").read_text())
    assert {i["name"] for i in kustomization["images"]} == {"jobs-api", "jobs-worker"}


def test_dev_overlay_runs_the_images_make_containers_builds() -> None:
    """The dev overlay uses the tags `make containers` builds, which README says to load into kind."""
    script = (REPO / "scripts/docker/build-images.sh").read_text()
    tag = re.search(r'TAG="\$\{IMAGE_TAG:-([^}]+)\}"', script).group(1)  # type: ignore[union-attr]
    assert _our_images(build_overlay("dev")) == {f"jobs-api:{tag}", f"jobs-worker:{tag}"}


# --- worker-only environment and credentials (issue 9) ----------------------------------------------------


def _container(objects: list[Obj], comp: str) -> Obj:
    return pod_spec(one(objects, "Deployment", comp))["containers"][0]  # type: ignore[index]


def test_task_settings_and_credentials_reach_the_workers_only(rendered: dict[str, list[Obj]]) -> None:
    """worker.extraEnv / envFrom / volumes go to the workers; the API (which runs no task code) gets none."""
    objects = rendered["task-credentials"]
    worker, api = _container(objects, "worker"), _container(objects, "api")
    env = env_of(worker, objects)
    assert env["S3_BUCKET"] == "acme-renders" and env["AWS_REGION"] == "eu-west-1"
    assert env["JOBS_TASK_MODULES"] == "acme.tasks"
    assert {"secretRef": {"name": "acme-task-credentials"}} in worker["envFrom"]
    assert {"configMapRef": {"name": "acme-tasks"}} in worker["envFrom"]
    assert {"name": "gcp-key", "mountPath": "/var/run/secrets/gcp", "readOnly": True} in worker["volumeMounts"]
    volumes = pod_spec(one(objects, "Deployment", "worker"))["volumes"]  # type: ignore[index]
    assert {"name": "gcp-key", "secret": {"secretName": "acme-gcp-key"}} in volumes
    assert not {"S3_BUCKET", "AWS_REGION"} & set(env_of(api, objects))
    assert [s for s in api["envFrom"] if "secretRef" in s] == []
    assert "gcp-key" not in {v["name"] for v in pod_spec(one(objects, "Deployment", "api"))["volumes"]}  # type: ignore[index]
    # config.extraEnv stays the shared one
    assert unknown_env_names(objects) == []


def test_unknown_names_in_our_namespace_are_still_caught_on_workers(rendered: dict[str, list[Obj]]) -> None:
    objects = copy.deepcopy(rendered["task-credentials"])
    _container(objects, "worker")["env"].append({"name": "JOBS_CONCURENCY", "value": "4"})
    assert unknown_env_names(objects) == [
        f"Deployment/{one(objects, 'Deployment', 'worker')['metadata']['name']}/worker: JOBS_CONCURENCY"]


def test_worker_env_cannot_shadow_the_charts_own() -> None:
    import helm_python as helm

    for name in ("JOBS_CONCURRENCY", "REDIS_PASSWORD", "POD_NAME"):
        with pytest.raises(helm.HelmValuesError):
            render_chart({"worker": {"extraEnv": {name: "x"}}})


def test_the_default_values_are_one_pool_like_the_single_worker(rendered: dict[str, list[Obj]]) -> None:
    """Issue 11: the default `workerPools` is one pool with the single worker's names, queue and scaling."""
    objects = rendered["defaults"]
    (worker,) = [w for w in workloads(objects) if any(c["name"] == "worker" for c in pod_spec(w)["containers"])]  # type: ignore[index]
    assert worker["kind"] == "Deployment" and worker["metadata"]["name"] == "jobs-jobs-api-worker"
    env = env_of(pod_spec(worker)["containers"][0], objects)  # type: ignore[index]
    assert "JOBS_QUEUES" not in env and pool_queues(env) == [Settings.queue]
    assert [s["metadata"]["name"] for s in find(objects, "ScaledObject")] == [worker["metadata"]["name"]]
    assert not find(objects, "ScaledJob")
    assert _strip_random(render_chart({"workerPools": [{"name": "default"}]})) == _strip_random(render_chart({}))


def _strip_random(objects: list[Obj]) -> list[Obj]:
    """Objects without the generated Secrets and the checksums of them (new random values each render)."""
    out = []
    for obj in copy.deepcopy(objects):
        if obj["kind"] == "Secret":
            continue
        if obj["kind"] in ("Deployment", "StatefulSet"):
            annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
            for key in ("checksum/redis-secret", "checksum/api-keys-secret"):
                annotations.pop(key, None)
        out.append(obj)
    return out


def test_every_pool_reaches_redis_and_the_sentinels(rendered: dict[str, list[Obj]]) -> None:
    """Pools' pods are let through the Redis NetworkPolicy in both Redis modes (single and sentinel)."""
    pools = VALUE_SETS["pools"]["workerPools"]
    for extra in ({}, {"redis": {"mode": "sentinel"}}):
        objects = render_chart({"workerPools": pools, **extra})
        peers = [p["podSelector"]["matchLabels"] for np in find(objects, "NetworkPolicy")
                 if component(np) in ("redis", "redis-sentinel", "sentinel")
                 for rule in np["spec"]["ingress"] for p in rule["from"] if "namespaceSelector" not in p]
        workers = [w for w in workloads(objects) if pod_spec(w)["containers"][0]["name"] == "worker"]  # type: ignore[index]
        assert len(workers) == 3
        for worker in workers:
            assert any(selector_matches(sel, pod_labels(worker)) for sel in peers), (extra, worker["metadata"]["name"])


# --- the console's session secret (issue 13) --------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["dev", "prod", "gpu"])
def test_kustomize_gives_the_api_the_console_secret(overlay: str) -> None:
    """Every overlay hands JOBS_UI_SECRET to the API (like the chart) from the API-keys Secret, optional so
    a Secret made before the console still starts; the workers never get it, and it is not a file."""
    import base64

    objects = build_overlay(overlay)
    api = _container(objects, "api")
    keys_volume = next(v for v in pod_spec(one(objects, "Deployment", "api"))["volumes"]  # type: ignore[index]
                       if v["name"] == "api-keys")["secret"]
    ref = env_of(api, objects)["JOBS_UI_SECRET"]["secretKeyRef"]
    assert ref["name"] == keys_volume["secretName"] and ref["key"] == "ui-secret" and ref["optional"] is True
    assert keys_volume["items"] == [{"key": "api-keys", "path": "api-keys"}]
    for worker in find(objects, "Deployment", "worker"):
        for container in pod_spec(worker)["containers"]:  # type: ignore[index]
            assert "JOBS_UI_SECRET" not in env_of(container, objects)
    if overlay == "dev":  # generated in the overlay, long enough for the API to accept it
        secret = by_name(objects, "Secret", ref["name"])
        assert secret is not None
        assert len(base64.b64decode(secret["data"]["ui-secret"])) >= 32
    else:  # prod takes it from outside git: the overlay's own instructions create it
        text = (REPO / "k8s/overlays/prod/kustomization.yaml").read_text()
        assert '--from-literal=ui-secret="$(openssl rand -hex 32)"' in text


def test_the_dev_console_secret_is_accepted_by_the_api() -> None:
    """The dev overlay's literal passes the API's own check (at least 32 characters)."""
    import base64

    from jobs_api.console.session import ConsoleConfig

    objects = build_overlay("dev")
    ref = env_of(_container(objects, "api"), objects)["JOBS_UI_SECRET"]["secretKeyRef"]
    value = base64.b64decode(by_name(objects, "Secret", ref["name"])["data"]["ui-secret"]).decode()  # type: ignore[index]
    assert ConsoleConfig.from_env({"JOBS_UI_SECRET": value}).secret == value


def test_the_api_behind_the_ingress_counts_the_real_client(rendered: dict[str, list[Obj]]) -> None:
    """The login rate limit is per client address: behind ingress-nginx the API reads it from the one
    X-Forwarded-For entry the ingress appends (JOBS_TRUSTED_PROXY_HOPS=1), and only when an Ingress exists."""
    for objects in (build_overlay("dev"), build_overlay("prod"), rendered["defaults"]):
        assert find(objects, "Ingress")
        assert env_of(_container(objects, "api"), objects)["JOBS_TRUSTED_PROXY_HOPS"] == "1"
        for worker in find(objects, "Deployment", "worker"):
            assert "JOBS_TRUSTED_PROXY_HOPS" not in env_of(pod_spec(worker)["containers"][0], objects)  # type: ignore[index]
    no_ingress = render_chart({"ingress": {"enabled": False}})
    assert "JOBS_TRUSTED_PROXY_HOPS" not in env_of(_container(no_ingress, "api"), no_ingress)
