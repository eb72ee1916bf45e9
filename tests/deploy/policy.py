"""Policy checks over workloads: each function returns the violations it finds (empty = compliant), so
tests can run them over rendered manifests and prove, on broken copies, that they do catch problems."""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import Any

from jobs_core.config import Settings
from jobs_core.redis_tuning import REDIS_SERVER_CONFIG

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


_UNITS = {"kb": 1000, "mb": 1000**2, "gb": 1000**3, "k": 1000, "m": 1000**2, "g": 1000**3,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "": 1}

#: Redis' maxmemory may use at most this share of its container's memory limit: the AOF rewrite forks,
#: and the child's copy-on-write pages (up to the writes made while it runs) count against the same limit.
REDIS_MAXMEMORY_SHARE = 0.6


def to_bytes(quantity: str) -> int:
    """Bytes in a Redis size (768mb) or a Kubernetes quantity (1Gi)."""
    m = re.fullmatch(r"([0-9]+)([A-Za-z]*)", str(quantity))
    assert m, f"not a size: {quantity!r}"
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def redis_memory_violations(container: Obj) -> list[str]:
    """A Redis container's maxmemory must leave fork headroom under its memory limit."""
    if container.get("command", [None])[0] != "redis-server" or "--sentinel" in container.get("args", []):
        return []  # a sentinel stores no data
    args = container.get("args", [])
    if "--maxmemory" not in args:
        return [f"{container['name']}: no --maxmemory (a full Redis would be OOM-killed)"]
    cap = to_bytes(args[args.index("--maxmemory") + 1])
    limit = to_bytes(container["resources"]["limits"]["memory"])
    if cap > REDIS_MAXMEMORY_SHARE * limit:
        return [f"{container['name']}: maxmemory {args[args.index('--maxmemory') + 1]} is over "
                f"{REDIS_MAXMEMORY_SHARE:.0%} of the {container['resources']['limits']['memory']} limit "
                "(no headroom for the AOF-rewrite fork: OOM-kill before the cap applies)"]
    return []


#: Redis' own default of hash-max-listpack-value: a value below it is no tuning at all.
REDIS_DEFAULT_HASH_MAX_LISTPACK_VALUE = 64


def redis_tuning_violations(container: Obj) -> list[str]:
    """A Redis data container must run with every setting of ``jobs_core.redis_tuning`` (the value may be
    tuned, but not dropped or set below Redis' own default): without ``hash-max-listpack-value`` a
    finished job record takes ~3x the bytes."""
    if container.get("command", [None])[0] != "redis-server" or "--sentinel" in container.get("args", []):
        return []  # a sentinel stores no data
    args = [str(a) for a in container.get("args", [])]
    out = []
    for name in REDIS_SERVER_CONFIG:
        flag = f"--{name}"
        if flag not in args or args.index(flag) + 1 >= len(args):
            out.append(f"{container['name']}: no {flag} (jobs_core.redis_tuning: job records leave listpack)")
            continue
        value = args[args.index(flag) + 1]
        if not value.isdigit() or int(value) < REDIS_DEFAULT_HASH_MAX_LISTPACK_VALUE:
            out.append(f"{container['name']}: {flag} {value!r} is not a size of at least "
                       f"{REDIS_DEFAULT_HASH_MAX_LISTPACK_VALUE}")
    return out


@functools.cache
def api_graceful_timeout_default() -> int:
    """gunicorn's graceful timeout when JOBS_API_GRACEFUL_TIMEOUT is unset: the API's gunicorn config takes
    it from the shared settings (checked here without importing gunicorn_conf, which has side effects)."""
    spec = importlib.util.find_spec("jobs_api.gunicorn_conf")
    assert spec is not None and spec.origin
    assert "graceful_timeout = _settings.api_graceful_timeout" in Path(spec.origin).read_text(), \
        "gunicorn_conf no longer takes its graceful timeout from Settings"
    return Settings.from_env({}).api_graceful_timeout


def _prestop_sleep(container: Obj) -> float | None:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(command) == 2 and command[0] == "sleep" and re.fullmatch(r"[0-9]+", str(command[1])):
        return float(command[1])
    return None


def api_shutdown_violations(container: Obj, grace: float, objects: list[Obj]) -> list[str]:
    """The API must sleep in preStop (while the ingress stops routing to it), and its grace period must
    cover that sleep plus gunicorn's graceful timeout for the requests in flight."""
    sleep = _prestop_sleep(container)
    if not sleep:
        return [f"{container['name']}: no preStop sleep (ingress-nginx still routes to a stopping pod: 502s)"]
    raw = env_of(container, objects).get("JOBS_API_GRACEFUL_TIMEOUT")
    graceful = int(raw) if isinstance(raw, str) and raw.strip() else api_graceful_timeout_default()
    if not grace > sleep + graceful:
        return [f"{container['name']}: terminationGracePeriodSeconds {grace} must exceed preStop sleep {sleep:g}"
                f" + JOBS_API_GRACEFUL_TIMEOUT {graceful}"]
    return []


def workload_violations(obj: Obj, objects: list[Obj]) -> list[str]:
    """Every policy over one workload object."""
    spec = pod_spec(obj)
    assert spec is not None
    label = f"{obj['kind']}/{obj['metadata']['name']}"
    long_running = obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    app = spec.get("containers", [])  # init containers run to completion: no probes
    out = [f"{label} {v}" for c in containers(spec)
           for v in container_violations(c, spec, needs_probes=long_running and c in app)]
    if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
        out.append(f"{label}: shares a host namespace")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    for c in spec.get("containers", []):
        if _is_worker(c):
            drain = drain_seconds(c, objects)
            if not grace > drain:
                out.append(f"{label}: terminationGracePeriodSeconds {grace} must exceed JOBS_DRAIN_SECONDS {drain}")
        if _is_api(c) and long_running:
            out += [f"{label} {v}" for v in api_shutdown_violations(c, grace, objects)]
        out += [f"{label} {v}" for v in redis_memory_violations(c)]
        out += [f"{label} {v}" for v in redis_tuning_violations(c)]
    return out


def _is_api(container: Obj) -> bool:
    image = container.get("image", "")
    return image.rpartition(":")[0].endswith("jobs-api") and container.get("name") == "api"


def _is_worker(container: Obj) -> bool:
    image = container.get("image", "")
    return image.rpartition(":")[0].endswith("jobs-worker") or container.get("name") == "worker"
