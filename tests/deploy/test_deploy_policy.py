"""Policy checks over every rendered workload, and the shape the issue asks of each component."""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import pytest
from jobs_core.redis_tuning import HASH_MAX_LISTPACK_VALUE

from deploy.manifests import (
    Obj,
    containers,
    env_of,
    find,
    one,
    pod_labels,
    pod_spec,
    render_chart,
    selector_matches,
    workloads,
)
from deploy.policy import (
    REDIS_MAXMEMORY_SHARE,
    image_violations,
    redis_memory_violations,
    redis_tuning_violations,
    to_bytes,
    workload_violations,
)


def test_every_workload_passes_the_policies(all_sources: dict[str, list[Obj]]) -> None:
    errors = []
    for source, objects in all_sources.items():
        found = list(workloads(objects))
        assert found, f"{source}: no workloads"
        for obj in found:
            errors += [f"{source}: {v}" for v in workload_violations(obj, objects)]
    assert not errors, "\n".join(errors)


def _worker(objects: list[Obj]) -> Obj:
    return one(objects, "Deployment", "worker")


BREAKAGES: dict[str, Any] = {
    "no-limits": lambda c, s: c["resources"].pop("limits"),
    "no-memory-request": lambda c, s: c["resources"]["requests"].pop("memory"),
    "no-liveness": lambda c, s: c.pop("livenessProbe"),
    "no-readiness": lambda c, s: c.pop("readinessProbe"),
    "root-user": lambda c, s: s["securityContext"].__setitem__("runAsUser", 0),
    "non-root-off": lambda c, s: c["securityContext"].__setitem__("runAsNonRoot", False),
    "writable-root": lambda c, s: c["securityContext"].__setitem__("readOnlyRootFilesystem", False),
    "escalation": lambda c, s: c["securityContext"].pop("allowPrivilegeEscalation"),
    "caps-kept": lambda c, s: c["securityContext"]["capabilities"].__setitem__("drop", []),
    "no-seccomp": lambda c, s: s["securityContext"].pop("seccompProfile"),
    "latest-tag": lambda c, s: c.__setitem__("image", "jobs-worker:latest"),
    "untagged": lambda c, s: c.__setitem__("image", "registry.example.com:5000/jobs-worker"),
    "no-tmp": lambda c, s: c.__setitem__("volumeMounts", []),
    "grace-too-short": lambda c, s: s.__setitem__("terminationGracePeriodSeconds", 25),
    "drain-too-long": lambda c, s: c["env"].append({"name": "JOBS_DRAIN_SECONDS", "value": "45"}),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_policies_catch_a_broken_worker(rendered: dict[str, list[Obj]], breakage: str) -> None:
    objects = rendered["defaults"]
    worker = copy.deepcopy(_worker(objects))
    assert workload_violations(worker, objects) == []
    spec = pod_spec(worker)
    assert spec is not None
    BREAKAGES[breakage](spec["containers"][0], spec)
    assert workload_violations(worker, objects), breakage


@pytest.mark.parametrize(
    ("image", "ok"),
    [("jobs-api:0.1.0", True), ("redis:7.4.2", True), ("r.example.com:5000/jobs-api:1.2", True),
     ("jobs-api@sha256:" + "a" * 64, True), ("jobs-api", False), ("jobs-api:latest", False),
     ("r.example.com:5000/jobs-api", False)],
)
def test_image_tag_policy(image: str, ok: bool) -> None:
    assert (image_violations(image) == []) is ok


def test_default_tags_are_pinned_release_versions(rendered: dict[str, list[Obj]]) -> None:
    images = {c["image"] for w in workloads(rendered["defaults"]) for c in containers(pod_spec(w) or {})}
    assert images == {"jobs-api:0.1.0", "jobs-worker:0.1.0", "redis:7.4.2"}


@pytest.mark.parametrize("source", ["helm:defaults", "helm:prod-sizing", "kustomize:dev", "kustomize:prod"])
def test_api_deployment_shape(all_sources: dict[str, list[Obj]], source: str) -> None:
    objects = all_sources[source]
    api = one(objects, "Deployment", "api")
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spec = pod_spec(api)
    assert spec is not None
    (container,) = spec["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert [p["containerPort"] for p in container["ports"]] == [8000]
    env = env_of(container, objects)
    assert env["JOBS_BIND"] == "0.0.0.0:8000"
    assert env["REDIS_URL"].startswith(("redis://", "rediss://"))
    assert env["REDIS_PASSWORD"]["secretKeyRef"]["name"]
    # the API keys Secret is a mounted file, named by JOBS_API_KEYS_FILE
    keys_file = env["JOBS_API_KEYS_FILE"]
    mount = next(m for m in container["volumeMounts"] if keys_file.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"]
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec.get("automountServiceAccountToken") is False
    service = one(objects, "Service", "api")
    assert selector_matches(service["spec"]["selector"], pod_labels(api))
    pdb = one(objects, "PodDisruptionBudget", "api")
    assert selector_matches(pdb["spec"]["selector"]["matchLabels"], pod_labels(api))
    ingress = one(objects, "Ingress", "api")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]


def test_api_replicas_per_environment(all_sources: dict[str, list[Obj]]) -> None:
    def replicas(source: str) -> int:
        return int(one(all_sources[source], "Deployment", "api")["spec"]["replicas"])

    assert replicas("kustomize:dev") == 1
    dev_api = one(all_sources["kustomize:dev"], "Deployment", "api")
    assert env_of(pod_spec(dev_api)["containers"][0], all_sources["kustomize:dev"])["WEB_CONCURRENCY"] == "1"  # type: ignore[index]
    assert replicas("helm:ci-kind") == 1
    assert one(all_sources["helm:ci-kind"], "Ingress", "api")["spec"]["rules"][0]["host"] == "localhost"
    assert replicas("kustomize:prod") == 2
    assert replicas("helm:defaults") == 2
    assert one(all_sources["kustomize:dev"], "Ingress", "api")["spec"]["rules"][0]["host"] == "localhost"
    assert one(all_sources["kustomize:prod"], "Ingress", "api")["spec"]["tls"]


@pytest.mark.parametrize("source", ["helm:defaults", "helm:autoscaling-off", "kustomize:dev", "kustomize:prod"])
def test_worker_deployment_shape(all_sources: dict[str, list[Obj]], source: str) -> None:
    objects = all_sources[source]
    worker = _worker(objects)
    spec = pod_spec(worker)
    assert spec is not None
    (container,) = spec["containers"]
    assert container["livenessProbe"]["exec"]["command"] == ["jobs-worker", "check"]
    env = env_of(container, objects)
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    account = one(objects, "ServiceAccount", "worker")["metadata"]["name"]
    assert spec["serviceAccountName"] == account
    role = one(objects, "Role", "worker")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["patch"]}]
    binding = one(objects, "RoleBinding", "worker")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert [s["name"] for s in binding["subjects"]] == [account]
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    pdb = one(objects, "PodDisruptionBudget", "worker")
    assert selector_matches(pdb["spec"]["selector"]["matchLabels"], pod_labels(worker))


def test_worker_replicas_owned_by_keda_unless_autoscaling_is_off(rendered: dict[str, list[Obj]]) -> None:
    assert "replicas" not in _worker(rendered["defaults"])["spec"]
    off = rendered["autoscaling-off"]
    assert _worker(off)["spec"]["replicas"] == 3
    assert not find(off, "ScaledObject") and not find(off, "TriggerAuthentication")


@pytest.mark.parametrize("source", ["helm:defaults", "helm:prod-sizing", "kustomize:dev", "kustomize:prod"])
def test_redis_statefulset(all_sources: dict[str, list[Obj]], source: str) -> None:
    objects = all_sources[source]
    sts = one(objects, "StatefulSet", "redis")
    spec = pod_spec(sts)
    assert spec is not None
    (container,) = spec["containers"]
    image, _, tag = container["image"].partition(":")
    assert image == "redis" and tag.startswith("7.")
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] in ("everysec", "always")
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    password = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    service = one(objects, "Service", "redis")
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert selector_matches(service["spec"]["selector"], pod_labels(sts))


def test_memory_units() -> None:
    assert to_bytes("768mb") < to_bytes("1Gi") < to_bytes("1gb") * 2
    assert to_bytes("3gb") < to_bytes("4Gi") and not to_bytes("2gb") < to_bytes("1Gi")


def test_redis_maxmemory_leaves_fork_headroom_in_every_source(all_sources: dict[str, list[Obj]]) -> None:
    """Issue 10 #3: every value set (the kind values too) and both overlays keep maxmemory <= ~60% of the
    container limit, so a full Redis refuses writes before the kernel OOM-kills it mid AOF rewrite."""
    checked = []
    for source, objects in all_sources.items():
        for sts in find(objects, "StatefulSet", "redis"):
            (container,) = pod_spec(sts)["containers"]  # type: ignore[index]
            assert redis_memory_violations(container) == [], source
            checked.append(source)
    assert {"helm:defaults", "helm:ci-kind", "helm:prod-sizing", "kustomize:dev", "kustomize:prod"} <= set(checked)


@pytest.mark.parametrize(("maxmemory", "limit", "ok"),
                         [("768mb", "1Gi", False), ("600mb", "1Gi", True), ("768mb", "256Mi", False),
                          ("150mb", "256Mi", True), ("3gb", "4Gi", False), ("2400mb", "4Gi", True)])
def test_redis_memory_policy(maxmemory: str, limit: str, ok: bool) -> None:
    container = {"name": "redis", "command": ["redis-server"], "args": ["--maxmemory", maxmemory],
                 "resources": {"limits": {"memory": limit}}}
    assert (redis_memory_violations(container) == []) is ok
    assert (to_bytes(maxmemory) <= REDIS_MAXMEMORY_SHARE * to_bytes(limit)) is ok


API_BREAKAGES: dict[str, Any] = {
    "no-prestop": lambda c, s: c.pop("lifecycle"),
    "grace-below-prestop-plus-graceful": lambda c, s: s.__setitem__("terminationGracePeriodSeconds", 30),
    "graceful-timeout-raised": lambda c, s: c["env"].append({"name": "JOBS_API_GRACEFUL_TIMEOUT", "value": "60"}),
}


@pytest.mark.parametrize("breakage", sorted(API_BREAKAGES))
@pytest.mark.parametrize("source", ["helm:defaults", "kustomize:prod"])
def test_policies_catch_an_api_that_drops_requests_on_shutdown(
    all_sources: dict[str, list[Obj]], source: str, breakage: str
) -> None:
    """Issue 10 #6: a preStop sleep, and a grace period covering it plus gunicorn's graceful timeout."""
    objects = all_sources[source]
    api = copy.deepcopy(one(objects, "Deployment", "api"))
    assert workload_violations(api, objects) == []
    spec = pod_spec(api)
    assert spec is not None
    API_BREAKAGES[breakage](spec["containers"][0], spec)
    assert workload_violations(api, objects), breakage


def test_chart_refuses_a_grace_period_that_cuts_requests_off() -> None:
    import helm_python as helm

    from deploy.manifests import render_chart

    with pytest.raises(helm.HelmRenderError, match="preStopSleepSeconds"):
        render_chart({"api": {"terminationGracePeriodSeconds": 30}})


def test_redis_fsync_policy_is_configurable(rendered: dict[str, list[Obj]]) -> None:
    def fsync(name: str) -> str:
        args = pod_spec(one(rendered[name], "StatefulSet", "redis"))["containers"][0]["args"]  # type: ignore[index]
        return str(args[args.index("--appendfsync") + 1])

    assert fsync("defaults") == "everysec"
    assert fsync("prod-sizing") == "always"


def test_external_redis_renders_no_redis_objects(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["external-redis"]
    assert not [o for o in objects if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "redis"
                and o["kind"] in ("StatefulSet", "Service", "NetworkPolicy")]
    cm = one(objects, "ConfigMap", "config")
    assert cm["data"]["REDIS_URL"] == "rediss://redis.example.com:6380/2"
    trigger = one(objects, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert trigger["address"] == "redis.example.com:6380"
    assert trigger["databaseIndex"] == "2"
    assert trigger["enableTLS"] == "true"


def test_every_redis_runs_the_shipped_listpack_setting(all_sources: dict[str, list[Obj]]) -> None:
    """Issue 16 #5: every Redis the chart (standalone and sentinel) and the overlays start runs with
    ``hash-max-listpack-value`` from ``jobs_core.redis_tuning`` (the default value sets: exactly the shipped
    value), so a finished job record stays in the compact listpack encoding (tests/core/test_memory.py)."""
    checked = []
    for source, objects in all_sources.items():
        for sts in find(objects, "StatefulSet", "redis"):
            (container,) = pod_spec(sts)["containers"]  # type: ignore[index]
            assert redis_tuning_violations(container) == [], source
            args = [str(a) for a in container["args"]]
            value = args[args.index("--hash-max-listpack-value") + 1]
            assert value == str(HASH_MAX_LISTPACK_VALUE), (source, value)
            checked.append(source)
    assert {"helm:defaults", "helm:ci-kind", "helm:prod-sizing", "helm:sentinel",
            "kustomize:dev", "kustomize:prod"} <= set(checked), checked


@pytest.mark.parametrize(("args", "ok"), [
    (["--maxmemory", "600mb", "--hash-max-listpack-value", "2048"], True),
    (["--hash-max-listpack-value", "64"], True),
    (["--maxmemory", "600mb"], False),                            # dropped: records leave listpack
    (["--hash-max-listpack-value", "32"], False),                 # below Redis' own default
    (["--hash-max-listpack-value", "2kb"], False),                # not a byte count
    (["--hash-max-listpack-value"], False),                       # no value
    (["/conf/sentinel.conf", "--sentinel"], True),               # a sentinel stores no data
])
def test_redis_tuning_policy(args: list[str], ok: bool) -> None:
    container = {"name": "redis", "command": ["redis-server"], "args": args}
    assert (redis_tuning_violations(container) == []) is ok


def test_chart_value_sets_the_listpack_setting() -> None:
    """``redis.hashMaxListpackValue`` reaches both Redis templates; the schema refuses a value under 64."""
    for mode in ("standalone", "sentinel"):
        objects = render_chart({"redis": {"mode": mode, "hashMaxListpackValue": 4096}}, include_tests=False)
        (container,) = pod_spec(one(objects, "StatefulSet", "redis"))["containers"]  # type: ignore[index]
        args = [str(a) for a in container["args"]]
        assert args[args.index("--hash-max-listpack-value") + 1] == "4096", mode
    with pytest.raises(helm.HelmValuesError, match="hashMaxListpackValue"):
        render_chart({"redis": {"hashMaxListpackValue": 16}}, include_tests=False)
