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
    """Where the services read their environment: the shared settings, and the API's gunicorn config
    (WEB_CONCURRENCY). Located without importing (importing the gunicorn config has side effects)."""
    spec = importlib.util.find_spec("jobs_api.gunicorn_conf")
    assert spec is not None and spec.origin, "jobs_api.gunicorn_conf not installed"
    return [Path(config_module.__file__), Path(spec.origin)]


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
            if image.endswith(("jobs-api", "jobs-worker")):
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


def keda_violations(objects: list[Obj]) -> list[str]:
    """How the ScaledObject/TriggerAuthentication disagree with the worker and the code's key names."""
    out: list[str] = []
    scaled = one(objects, "ScaledObject")
    worker = one(objects, "Deployment", "worker")
    env = _worker_env(objects)
    keys = Keys(str(env.get("JOBS_KEY_PREFIX", Settings.key_prefix)), str(env.get("JOBS_QUEUE", Settings.queue)))
    spec = scaled["spec"]
    if spec["scaleTargetRef"]["name"] != worker["metadata"]["name"]:
        out.append("scaleTargetRef does not name the worker Deployment")
    if not 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]:
        out.append("minReplicaCount/maxReplicaCount out of order")
    triggers = {t.get("name"): t for t in spec["triggers"]}
    sentinels = env.get("REDIS_SENTINELS")
    kind = "redis-sentinel" if sentinels else "redis"  # behind Sentinel, KEDA asks the sentinels as the pods do
    lists = sorted(t["metadata"]["listName"] for t in spec["triggers"] if t["type"] == kind)
    if lists != sorted([keys.queue, keys.inflight]):
        out.append(f"redis trigger lists {lists} are not [{keys.queue}, {keys.inflight}]")
    if len(triggers) != len(spec["triggers"]) or None in triggers:
        out.append("every trigger needs its own name")
    modifiers = spec.get("advanced", {}).get("scalingModifiers", {})
    formula = modifiers.get("formula", "")
    used = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", formula))
    if used != set(triggers):
        out.append(f"formula {formula!r} must combine exactly the triggers {sorted(map(str, triggers))}")
    if "+" not in formula:
        out.append("formula must add waiting and running work")
    by_list = {t["metadata"]["listName"]: n for n, t in triggers.items()}
    if by_list.get(keys.inflight) not in used:
        out.append("the in-flight list must count in the formula (scale-in never treats running work as idle)")
    concurrency = str(env.get("JOBS_CONCURRENCY", Settings.concurrency))
    if modifiers.get("target") != concurrency:
        out.append(f"scalingModifiers.target {modifiers.get('target')!r} != JOBS_CONCURRENCY {concurrency}")
    password = env.get("REDIS_PASSWORD")
    auths = find(objects, "TriggerAuthentication")
    for trigger in spec["triggers"]:
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
    if not password and auths:
        out.append("TriggerAuthentication without a Redis password")
    # the operator runs in another namespace: the address must be the Redis Service's FQDN there
    redis_services = find(objects, "Service", "redis")
    for trigger in spec["triggers"]:
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
    return [s for s, objects in all_sources.items() if find(objects, "ScaledObject")]


def test_keda_watches_the_lists_the_code_uses(all_sources: dict[str, list[Obj]]) -> None:
    sources = _with_autoscaling(all_sources)
    assert {"helm:defaults", "helm:prod-sizing", "kustomize:dev", "kustomize:prod"} <= set(sources)
    problems = [f"{s}: {v}" for s in sources for v in keda_violations(all_sources[s])]
    assert problems == []


def test_keda_follows_a_custom_queue_and_prefix(rendered: dict[str, list[Obj]]) -> None:
    scaled = one(rendered["prod-sizing"], "ScaledObject")  # queue emails, prefix acme, concurrency 4
    lists = {t["name"]: t["metadata"]["listName"] for t in scaled["spec"]["triggers"]}
    assert lists == {"waiting": Keys("acme", "emails").queue, "running": Keys("acme", "emails").inflight}
    assert scaled["spec"]["advanced"]["scalingModifiers"]["target"] == "4"


@pytest.mark.parametrize(
    "breakage",
    ["wrong-list", "stale-queue", "no-running-trigger", "formula-ignores-running", "target", "auth-key", "address"],
)
def test_keda_contract_catches_drift(rendered: dict[str, list[Obj]], breakage: str) -> None:
    objects = copy.deepcopy(rendered["defaults"])
    assert keda_violations(objects) == []
    spec = one(objects, "ScaledObject")["spec"]
    if breakage == "wrong-list":
        spec["triggers"][1]["metadata"]["listName"] = "jobs:inflight"
    elif breakage == "stale-queue":
        one(objects, "ConfigMap", "config")["data"]["JOBS_QUEUE"] = "emails"
    elif breakage == "no-running-trigger":
        spec["triggers"].pop()
    elif breakage == "formula-ignores-running":
        spec["advanced"]["scalingModifiers"]["formula"] = "waiting"
    elif breakage == "target":
        spec["advanced"]["scalingModifiers"]["target"] = "5"
    elif breakage == "auth-key":
        one(objects, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["key"] = "password"
    elif breakage == "address":
        for trigger in spec["triggers"]:
            trigger["metadata"]["address"] = "redis:6379"
    assert keda_violations(objects)


# --- wiring: selectors, names, namespaces --------------------------------------------------------------


def _policy_violations(objects: list[Obj]) -> list[str]:
    out = []
    pods = {component: pod_labels(one(objects, kind, component))
            for kind, component in (("Deployment", "api"), ("Deployment", "worker"), ("StatefulSet", "redis"))}
    redis_np = one(objects, "NetworkPolicy", "redis")
    if not selector_matches(redis_np["spec"]["podSelector"]["matchLabels"], pods["redis"]):
        out.append("redis policy does not select the Redis pods")
    peers = [p for rule in redis_np["spec"]["ingress"] for p in rule["from"]]
    local = [p["podSelector"].get("matchLabels", {}) for p in peers if "namespaceSelector" not in p]
    for component in ("api", "worker"):
        if not any(selector_matches(sel, pods[component]) for sel in local):
            out.append(f"{component} pods cannot reach Redis")
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
    for component in ("worker", "redis"):
        if any(selector_matches(p.get("podSelector", {}).get("matchLabels", {}), pods[component]) for p in api_peers):
            out.append(f"{component} pods may call the API")
    return out


@pytest.mark.parametrize(
    "source", ["helm:defaults", "helm:prod-sizing", "helm:ingress-tls", "kustomize:dev", "kustomize:prod"]
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
        external = source in ("kustomize:prod", "helm:existing-secrets", "helm:external-redis",
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
