"""Policy checks over workloads: each function returns the violations it finds (empty = compliant), so
tests can run them over rendered manifests and prove, on broken copies, that they do catch problems."""

from __future__ import annotations

import re
from typing import Any

from jobs_core.config import Settings

from deploy.manifests import Obj, containers, env_of, pod_spec

_CPU_OR_MEMORY = ("cpu", "memory")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")


def image_violations(image: str) -> list[str]:
    """An image must carry an explicit tag (or digest) that is not ``latest``."""
    if "@sha256:" in image:
        return []
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or not _TAG.match(tag):
        return [f"image {image!r} has no pinned tag"]
    if tag.lower() == "latest":
        return [f"image {image!r} uses the mutable tag latest"]
    return []


def container_violations(container: Obj, pod: Obj, *, needs_probes: bool) -> list[str]:
    """Resources, probes and security context of one container."""
    name = container["name"]
    out: list[str] = []
    resources = container.get("resources", {})
    for section in ("requests", "limits"):
        for res in _CPU_OR_MEMORY:
            if not resources.get(section, {}).get(res):
                out.append(f"{name}: no {section}.{res}")
    if needs_probes:
        for probe in ("readinessProbe", "livenessProbe"):
            if not container.get(probe):
                out.append(f"{name}: no {probe}")
    out += [f"{name}: {v}" for v in image_violations(container.get("image", ""))]

    pod_sc = pod.get("securityContext", {})
    sc = container.get("securityContext", {})

    def effective(key: str) -> Any:
        return sc.get(key, pod_sc.get(key))

    if effective("runAsNonRoot") is not True:
        out.append(f"{name}: runAsNonRoot is not true")
    uid = effective("runAsUser")
    if not isinstance(uid, int) or uid == 0:
        out.append(f"{name}: runAsUser must be a numeric non-root uid, got {uid!r}")
    if sc.get("readOnlyRootFilesystem") is not True:
        out.append(f"{name}: readOnlyRootFilesystem is not true")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append(f"{name}: allowPrivilegeEscalation is not false")
    if sc.get("privileged"):
        out.append(f"{name}: privileged")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []) or sc.get("capabilities", {}).get("add"):
        out.append(f"{name}: capabilities must drop ALL and add none")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        out.append(f"{name}: no RuntimeDefault seccomp profile")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    tmp = volumes.get(mounts.get("/tmp", ""), {})
    if "emptyDir" not in tmp:
        out.append(f"{name}: /tmp is not an emptyDir (the root filesystem is read-only)")
    return out


def drain_seconds(container: Obj, objects: list[Obj]) -> float:
    """JOBS_DRAIN_SECONDS as the worker will read it (the code's default when unset)."""
    raw = env_of(container, objects).get("JOBS_DRAIN_SECONDS")
    return float(raw) if isinstance(raw, str) and raw.strip() else Settings.drain_seconds


def workload_violations(obj: Obj, objects: list[Obj]) -> list[str]:
    """Every policy over one workload object."""
    spec = pod_spec(obj)
    assert spec is not None
    label = f"{obj['kind']}/{obj['metadata']['name']}"
    long_running = obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    out = [f"{label} {v}" for c in containers(spec) for v in container_violations(c, spec, needs_probes=long_running)]
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        out.append(f"{label}: shares a host namespace")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for c in spec.get("containers", []):
        if _is_worker(c):
            drain = drain_seconds(c, objects)
            if not grace > drain:
                out.append(f"{label}: terminationGracePeriodSeconds {grace} must exceed JOBS_DRAIN_SECONDS {drain}")
    return out


def _is_worker(container: Obj) -> bool:
    image = container.get("image", "")
    return image.rpartition(":")[0].endswith("jobs-worker") or container.get("name") == "worker"
