"""Runs everywhere (no cluster needed): the names and settings ``test_kind.py`` relies on are the ones
skaffold's ``kind`` profile and the Helm chart actually produce, so the kind suite cannot rot unseen."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from e2e.kind import test_kind

REPO = Path(__file__).resolve().parents[3]
Obj = dict[str, Any]


def _skaffold_release() -> Obj:
    docs = [d for d in yaml.safe_load_all((REPO / "skaffold.yaml").read_text()) if d]
    release: Obj = docs[0]["deploy"]["helm"]["releases"][0]
    return release


def _kind_values_files() -> list[str]:
    docs = [d for d in yaml.safe_load_all((REPO / "skaffold.yaml").read_text()) if d]
    kind = next(p for p in docs[0]["profiles"] if p["name"] == "kind")
    files: list[str] = []
    for patch in kind.get("patches", []):
        if patch["path"].endswith("/valuesFiles"):
            files += patch["value"]
    return files


@pytest.fixture(scope="module")
def objects() -> list[Obj]:
    import helm_python as helm  # a locked dev dependency: missing means a broken install, which must fail
    values: Obj = {}
    for name in _kind_values_files():
        values.update(yaml.safe_load((REPO / name).read_text()) or {})
    release = _skaffold_release()
    with helm.Chart.load(str(REPO / release["chartPath"])) as chart:
        rendered = chart.render(values, name=release["name"], namespace=release["namespace"])
    return [d for path, text in rendered.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]


def _get(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert found, f"{kind}/{name} not rendered for the kind profile"
    return found[0]


def test_skaffold_release_is_what_the_kind_suite_expects() -> None:
    release = _skaffold_release()
    assert release["name"] == test_kind.RELEASE
    assert release["namespace"] == test_kind.NAMESPACE
    assert _kind_values_files(), "skaffold's kind profile adds no values file"


def test_objects_the_kind_suite_touches(objects: list[Obj]) -> None:
    rel = test_kind.RELEASE
    secret = _get(objects, "Secret", f"{rel}-api-keys")
    assert "api-keys" in secret["data"]
    worker = _get(objects, "Deployment", f"{rel}-worker")
    pod = worker["spec"]["template"]["spec"]
    # kill_worker_running() finds the pod from the job's worker id, which starts with the hostname
    assert "hostname" not in pod and "subdomain" not in pod, "worker pods must keep hostname = pod name"
    redis = _get(objects, "StatefulSet", f"{rel}-redis")
    assert "--appendonly" in redis["spec"]["template"]["spec"]["containers"][0].get("args", [])
    so = _get(objects, "ScaledObject", f"{rel}-worker")
    assert so["spec"]["scaleTargetRef"]["name"] == f"{rel}-worker"
    assert so["spec"]["minReplicaCount"] < so["spec"]["maxReplicaCount"], "the burst test needs room to scale"


def test_ingress_serves_the_url_the_suite_uses(objects: list[Obj]) -> None:
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    url = urlsplit(test_kind.BASE_URL)
    assert [r["host"] for r in ingress["spec"]["rules"]] == [url.hostname]
    cluster = yaml.safe_load((REPO / "tests/e2e/kind/cluster.yaml").read_text())
    assert cluster["name"] == test_kind.CLUSTER
    node = cluster["nodes"][0]
    assert {"containerPort": 80, "hostPort": url.port or 80, "protocol": "TCP"} in node["extraPortMappings"]
    assert "ingress-ready=true" in node["kubeadmConfigPatches"][0]


#: Kubernetes minors each KEDA release supports (keda.sh/docs/<version>/operate/cluster).
KEDA_KUBERNETES = {"2.15": (28, 30), "2.16": (29, 31), "2.17": (30, 32), "2.18": (31, 33)}


def _run_sh() -> str:
    return (REPO / "tests/e2e/kind/run.sh").read_text()


def test_kind_node_image_is_a_kubernetes_the_pinned_keda_supports() -> None:
    """Issue 10 #8: kind's default node image was newer than KEDA 2.16 supports."""
    import re

    keda = re.search(r'KEDA_VERSION="\$\{KEDA_VERSION:-([0-9]+\.[0-9]+)\.[0-9]+\}"', _run_sh())
    assert keda, "run.sh pins no KEDA version"
    low, high = KEDA_KUBERNETES[keda.group(1)]
    cluster = yaml.safe_load((REPO / "tests/e2e/kind/cluster.yaml").read_text())
    for node in cluster["nodes"]:
        m = re.fullmatch(r"kindest/node:v1\.([0-9]+)\.[0-9]+(@sha256:[0-9a-f]{64})?", node.get("image", ""))
        assert m, f"node image not pinned: {node.get('image')!r}"
        assert low <= int(m.group(1)) <= high, f"Kubernetes 1.{m.group(1)} is outside KEDA {keda.group(1)}'s range"
    chart = yaml.safe_load((REPO / "helm/jobs-api/Chart.yaml").read_text())
    assert chart["kubeVersion"].startswith(">=")


def test_run_sh_waits_for_the_ingress_admission_jobs_before_deploying() -> None:
    """Issue 10 #8: Ingresses created before ingress-nginx's admission jobs finish are refused."""
    lines = [line.strip() for line in _run_sh().splitlines() if line.strip() and not line.strip().startswith("#")]
    install = next(i for i, line in enumerate(lines) if "ingress-nginx" in line and "kubectl apply" in line)
    wait = next(i for i, line in enumerate(lines) if line.startswith("kubectl -n ingress-nginx wait")
                and "--for=condition=complete job" in line and "admission-webhook" in line)
    deploy = next(i for i, line in enumerate(lines) if line.startswith("skaffold run"))
    assert install < wait < deploy
