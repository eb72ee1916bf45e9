"""Policy checks over every rendered workload, and the shape the issue asks of each component."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from deploy.manifests import Obj, containers, env_of, find, one, pod_labels, pod_spec, selector_matches, workloads
from deploy.policy import image_violations, workload_violations


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
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
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
    # a full Redis must refuse writes, not be OOM-killed: its cap sits below the container limit
    assert _bytes(args[args.index("--maxmemory") + 1]) < _bytes(container["resources"]["limits"]["memory"])
    password = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"]["name"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    service = one(objects, "Service", "redis")
    assert service["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"]
    assert selector_matches(service["spec"]["selector"], pod_labels(sts))


_UNITS = {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "k": 1000, "m": 1000**2, "g": 1000**3,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "": 1}


def _bytes(quantity: str) -> int:
    """Bytes in a Redis size (768mb) or a Kubernetes quantity (1Gi)."""
    number, unit = re.fullmatch(r"([0-9]+)([A-Za-z]*)", str(quantity)).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit.lower()]


def test_memory_units() -> None:
    assert _bytes("768mb") < _bytes("1Gi") < _bytes("1gb") * 2
    assert _bytes("3gb") < _bytes("4Gi") and not _bytes("2gb") < _bytes("1Gi")


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
