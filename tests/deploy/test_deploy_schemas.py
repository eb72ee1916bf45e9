"""Every rendered object validates against its schema: Kubernetes' (strict, a current and an older
supported version), KEDA's CRDs, and skaffold's for skaffold.yaml."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from deploy.manifests import REPO, SCHEMAS, Obj

#: The newest Kubernetes schemas kubernetes-validate ships, and the oldest version the chart supports
#: (Chart.yaml kubeVersion >= 1.29).
K8S_VERSIONS = (kubernetes_validate.utils.latest_version(), "1.29.0")
KEDA_CRDS = {
    "ScaledObject": SCHEMAS / "keda" / "keda.sh_scaledobjects.yaml",
    "ScaledJob": SCHEMAS / "keda" / "keda.sh_scaledjobs.yaml",
    "TriggerAuthentication": SCHEMAS / "keda" / "keda.sh_triggerauthentications.yaml",
    # Prometheus Operator CRDs (issue 15: alerts and the workers' scrape config)
    "PrometheusRule": SCHEMAS / "prometheus-operator" / "monitoring.coreos.com_prometheusrules.yaml",
    "PodMonitor": SCHEMAS / "prometheus-operator" / "monitoring.coreos.com_podmonitors.yaml",
}
#: Kinds from CRDs we have no schema for; checked structurally below.
NO_SCHEMA_KINDS = {"ServiceMonitor"}


def _strict(schema: Any) -> Any:
    """A copy of a CRD schema that rejects unknown fields (the API server would silently prune them,
    hiding a typo such as ``minReplicas``)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    """Strict validator for the served CRD version matching ``api_version``."""
    crd = yaml.safe_load(KEDA_CRDS[kind].read_text())
    group = crd["spec"]["group"]
    for version in crd["spec"]["versions"]:
        if f"{group}/{version['name']}" == api_version and version.get("served"):
            schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            return jsonschema.Draft7Validator(schema)
    raise AssertionError(f"{kind} {api_version} is not a served version of {KEDA_CRDS[kind].name}")


def validate_object(obj: Obj, k8s_version: str) -> list[str]:
    """Schema errors of one object (empty when valid)."""
    kind = obj.get("kind", "")
    if kind in KEDA_CRDS:
        return [
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in crd_validator(kind, obj["apiVersion"]).iter_errors(obj)
        ]
    if kind in NO_SCHEMA_KINDS:
        spec = obj.get("spec", {})
        ok = obj["apiVersion"] == "monitoring.coreos.com/v1" and spec.get("selector") and spec.get("endpoints")
        return [] if ok else ["ServiceMonitor needs apiVersion monitoring.coreos.com/v1, selector, endpoints"]
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.path))}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


@pytest.fixture(scope="module")
def _schema_files_read_once() -> Iterator[None]:
    """kubernetes-validate reads and parses its schema files (the definitions file is megabytes) for every
    object it validates; the files do not change during a run, so each is parsed once here. What is
    validated, and against what, is unchanged."""
    read = functools.cache(kubernetes_validate.utils.schema_contents)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kubernetes_validate.utils, "schema_contents", read)
        yield


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.usefixtures("_schema_files_read_once")
def test_every_object_validates(all_sources: dict[str, list[Obj]], k8s_version: str) -> None:
    # most value sets render many of the same objects: each distinct object is validated once, and its
    # errors are reported for every source that rendered it
    sources_of: dict[str, list[str]] = {}
    objects_by_text: dict[str, Obj] = {}
    for source, objects in all_sources.items():
        assert objects, f"{source} rendered nothing"
        for obj in objects:
            text = json.dumps(obj, sort_keys=True)
            objects_by_text.setdefault(text, obj)
            sources_of.setdefault(text, []).append(source)
    errors = []
    for text, obj in objects_by_text.items():
        for err in validate_object(obj, k8s_version):
            errors.extend(f"{source} {obj['kind']}/{obj['metadata']['name']}: {err}" for source in sources_of[text])
    assert not errors, "\n".join(errors)


def test_monitoring_objects_are_present_and_checked_against_the_crds(rendered: dict[str, list[Obj]]) -> None:
    kinds = {o["kind"] for o in rendered["observability"]}
    assert {"PrometheusRule", "PodMonitor", "ServiceMonitor", "ConfigMap"} <= kinds
    assert not {"PrometheusRule", "PodMonitor"} & {o["kind"] for o in rendered["defaults"]}  # optional
    rule = next(o for o in rendered["observability"] if o["kind"] == "PrometheusRule")
    assert validate_object(rule, K8S_VERSIONS[0]) == []
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["fro"] = "5m"  # a typo of "for"
    assert validate_object(broken, K8S_VERSIONS[0])
    # tracing: the OTEL_* variables reach both services through the shared ConfigMap, only when asked for
    def config(source: str) -> dict[str, str]:
        maps = [o for o in rendered[source] if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-config")]
        return dict(maps[0]["data"])
    assert config("observability")["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    assert config("observability")["OTEL_TRACES_SAMPLER_ARG"] == "0.2"
    assert not [k for k in config("defaults") if k.startswith("OTEL_")]


def test_keda_objects_are_present_and_checked_against_the_crds(all_sources: dict[str, list[Obj]]) -> None:
    for source in ("helm:defaults", "kustomize:dev", "kustomize:prod"):
        kinds = {o["kind"] for o in all_sources[source]}
        assert {"ScaledObject", "TriggerAuthentication"} <= kinds, source


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda o: o["spec"].__setitem__("replicas", "two"), "replicas"),
        (lambda o: o["spec"]["template"]["spec"].__setitem__("runAsUsr", 1), "runAsUsr"),
        (lambda o: o["spec"]["template"]["spec"]["containers"][0].__setitem__("imagePullPolicy", 3), ""),
    ],
    ids=["wrong-type", "unknown-field", "bad-enum-type"],
)
@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
def test_kubernetes_validation_catches_broken_objects(
    rendered: dict[str, list[Obj]], k8s_version: str, mutate: Any, needle: str
) -> None:
    deployment = copy.deepcopy(next(o for o in rendered["defaults"] if o["kind"] == "Deployment"))
    mutate(deployment)
    errors = validate_object(deployment, k8s_version)
    assert errors and needle in " ".join(errors)


@pytest.mark.parametrize(
    ("kind", "mutate"),
    [
        ("ScaledObject", lambda o: o["spec"].__setitem__("minReplicas", 1)),
        ("ScaledObject", lambda o: o["spec"].__setitem__("maxReplicaCount", "ten")),
        ("ScaledObject", lambda o: o["spec"]["triggers"][0].pop("type")),
        ("ScaledObject", lambda o: o["spec"]["advanced"]["scalingModifiers"].__setitem__("formla", "x")),
        ("TriggerAuthentication", lambda o: o["spec"]["secretTargetRef"][0].pop("key")),
    ],
    ids=["typo-field", "wrong-type", "missing-trigger-type", "typo-in-modifiers", "missing-secret-key"],
)
def test_keda_validation_catches_broken_objects(rendered: dict[str, list[Obj]], kind: str, mutate: Any) -> None:
    obj = copy.deepcopy(next(o for o in rendered["defaults"] if o["kind"] == kind))
    assert validate_object(obj, K8S_VERSIONS[0]) == []
    mutate(obj)
    assert validate_object(obj, K8S_VERSIONS[0])


def _skaffold_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / "skaffold" / "v4beta13.json").read_text())
    return jsonschema.Draft7Validator(schema)


def test_skaffold_yaml_validates_against_v4beta13() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert config["apiVersion"] == "skaffold/v4beta13"
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _skaffold_validator().iter_errors(config)]
    assert not errors, "\n".join(errors)


def test_skaffold_schema_catches_mistakes() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    config["deploy"]["helm"]["releases"][0]["chartpath"] = "typo"
    assert list(_skaffold_validator().iter_errors(config))


def test_skaffold_yaml_content() -> None:
    """Both images from the repo root, Helm by default, kind and kustomize profiles, API port-forward."""
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a for a in config["build"]["artifacts"]}
    assert set(artifacts) == {"jobs-api", "jobs-worker"}
    assert artifacts["jobs-api"]["docker"]["dockerfile"] == "services/api/Dockerfile"
    assert artifacts["jobs-worker"]["docker"]["dockerfile"] == "services/worker/Dockerfile"
    assert all(a["context"] == "." for a in artifacts.values())
    release = config["deploy"]["helm"]["releases"][0]
    assert (REPO / release["chartPath"] / "Chart.yaml").exists()
    templates = release["setValueTemplates"]
    assert templates["api.image.tag"] == "{{.IMAGE_TAG_jobs_api}}"
    assert templates["worker.image.repository"] == "{{.IMAGE_REPO_jobs_worker}}"
    profiles = {p["name"]: p for p in config["profiles"]}
    assert profiles["kind"]["build"]["local"]["push"] is False
    for patch in profiles["kind"].get("patches", []):
        for path in patch.get("value", []) if isinstance(patch.get("value"), list) else []:
            assert (REPO / path).exists(), path
    kustomize = profiles["kustomize"]
    assert [(REPO / p).is_dir() for p in kustomize["manifests"]["kustomize"]["paths"]] == [True]
    assert {"op": "remove", "path": "/deploy/helm"} in kustomize["patches"]
    # profiles apply in file order: kind patches the Helm release before kustomize removes it
    assert list(profiles).index("kind") < list(profiles).index("kustomize")
    forwards = config["portForward"] + kustomize["portForward"]
    assert all(f["resourceType"] == "service" and f["localPort"] == 8000 for f in forwards)
