"""The e2e scenarios against a kind cluster, through its ingress, plus KEDA scaling of the workers.

This module creates nothing: ``make e2e-kind`` (tests/e2e/kind/run.sh) creates the cluster, installs
ingress-nginx and KEDA and deploys with ``skaffold run -p kind`` first. Without kind, docker or that
cluster every test here is skipped with the reason.

Names follow the Helm release ``jobs-api`` in namespace ``jobs`` (skaffold.yaml); override with
E2E_NAMESPACE / E2E_RELEASE, and the ingress URL with E2E_BASE_URL (default http://localhost).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e import scenarios
from e2e.scenarios import Stack

CLUSTER = os.environ.get("KIND_CLUSTER", "jobs-e2e")
NAMESPACE = os.environ.get("E2E_NAMESPACE", "jobs")
RELEASE = os.environ.get("E2E_RELEASE", "jobs-api")
BASE_URL = os.environ.get("E2E_BASE_URL", "http://localhost")


def _skip_reason() -> str | None:
    if shutil.which("kind") is None:
        return "kind is not installed (run `make e2e-kind` on a machine with kind, docker, helm, skaffold)"
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"`kind get clusters` failed: {e}"
    if CLUSTER not in clusters.stdout.split():
        return f"no kind cluster named {CLUSTER!r}: `make e2e-kind` creates it and deploys first"
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        return "the kubernetes Python client is not installed"
    return None


_REASON = _skip_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


class KindStack(Stack):
    """The Helm release in the kind cluster, reached through ingress-nginx on the host's port 80."""

    name = "kind"
    proxied = True
    slots = 1  # minReplicaCount workers of concurrency 1 before KEDA adds more
    burst_size = 24
    recovery_seconds = 15 + 5 + 60.0  # default lease + reaper interval + pod rescheduling

    def __init__(self) -> None:
        from kubernetes import client, config

        config.load_kube_config(context=f"kind-{CLUSTER}")
        self.core = client.CoreV1Api()
        self.apps = client.AppsV1Api()
        self.custom = client.CustomObjectsApi()
        super().__init__(BASE_URL, self._api_key())

    def _api_key(self) -> str:
        secret = self.core.read_namespaced_secret(f"{RELEASE}-api-keys", NAMESPACE)
        line = base64.b64decode(secret.data["api-keys"]).decode().replace(",", "\n").split("\n")[0]
        return line.split(":", 1)[1].strip()

    def _delete_pod(self, name: str, grace: int) -> str:
        uid = self.core.read_namespaced_pod(name, NAMESPACE).metadata.uid
        self.core.delete_namespaced_pod(name, NAMESPACE, grace_period_seconds=grace)
        return str(uid)

    def _wait_gone(self, name: str, uid: str, timeout: float = 120) -> None:
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.core.read_namespaced_pod(name, NAMESPACE).metadata.uid != uid:
                    return
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            time.sleep(0.2)
        raise AssertionError(f"pod {name} still there after {timeout:.0f}s")

    def _wait_ready(self, name: str, timeout: float = 180) -> None:
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pod = self.core.read_namespaced_pod(name, NAMESPACE)
                if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                    return
            except ApiException as e:
                if e.status != 404:
                    raise
            time.sleep(0.5)
        raise AssertionError(f"pod {name} not ready after {timeout:.0f}s")

    def kill_worker_running(self, job: dict[str, Any]) -> None:
        """Delete the worker pod running the job at once (grace 0 = SIGKILL); its Deployment replaces it."""
        pod = str(job["worker"]).split(":", 1)[0]  # worker id = hostname(pod name):pid:random
        self._delete_pod(pod, grace=0)

    def restart_redis(self, while_down: Callable[[], None] | None = None) -> None:
        """Delete the Redis pod; the StatefulSet brings it back on the same PVC (AOF)."""
        pod = f"{RELEASE}-redis-0"
        uid = self._delete_pod(pod, grace=5)
        self._wait_gone(pod, uid)
        if while_down is not None:
            while_down()
        self._wait_ready(pod)

    def worker_replicas(self) -> int:
        dep = self.apps.read_namespaced_deployment(f"{RELEASE}-worker", NAMESPACE)
        return int(dep.spec.replicas or 0)

    def logs(self) -> str:
        pods = self.core.list_namespaced_pod(NAMESPACE).items
        return "\n".join(f"{p.metadata.name}: {p.status.phase}" for p in pods)


@pytest.fixture(scope="module")
def stack() -> Iterator[KindStack]:
    s = KindStack()
    deadline = time.monotonic() + 120
    while s.api.request("GET", "/readyz", auth=False).status != 200:
        assert time.monotonic() < deadline, "API not ready through the ingress"
        time.sleep(1)
    yield s


def test_keda_scaledobject_ready(stack: KindStack) -> None:
    so = stack.custom.get_namespaced_custom_object(
        "keda.sh", "v1alpha1", NAMESPACE, "scaledobjects", f"{RELEASE}-worker"
    )
    conditions = {c["type"]: c["status"] for c in so.get("status", {}).get("conditions", [])}
    assert conditions.get("Ready") == "True", so.get("status")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", ["submit_status_result_cancel", "worker_killed_mid_job"])
def test_scenario(stack: KindStack, name: str) -> None:
    scenarios.ALL[name](stack)


@pytest.mark.timeout(900)
def test_burst_scales_workers_up_and_back_down(stack: KindStack) -> None:
    """A burst of slow jobs: KEDA adds workers (watched), all succeed, then workers scale back in."""
    from kubernetes import watch

    baseline = stack.worker_replicas()
    seen: list[int] = []
    stop = threading.Event()

    def watch_replicas() -> None:
        w = watch.Watch()
        while not stop.is_set():
            for event in w.stream(stack.apps.list_namespaced_deployment, NAMESPACE,
                                  field_selector=f"metadata.name={RELEASE}-worker", timeout_seconds=5):
                seen.append(int(event["object"].spec.replicas or 0))
                if stop.is_set():
                    w.stop()
                    break

    watcher = threading.Thread(target=watch_replicas, daemon=True)
    watcher.start()

    def until_scaled_up(ids: list[str]) -> None:
        deadline = time.monotonic() + 180
        while max(seen, default=baseline) <= baseline:
            assert time.monotonic() < deadline, f"KEDA never scaled workers above {baseline}: {seen}"
            time.sleep(1)

    try:
        scenarios.burst_of_slow_jobs(stack, seconds=5.0, during=until_scaled_up)
        deadline = time.monotonic() + 420  # cooldown + HPA scale-down stabilization
        while stack.worker_replicas() > baseline:
            assert time.monotonic() < deadline, f"workers not scaled back to {baseline}: {seen[-5:]}"
            time.sleep(5)
    finally:
        stop.set()
        watcher.join(10)
    assert max(seen) > baseline


@pytest.mark.timeout(600)
def test_redis_pod_restart_loses_nothing(stack: KindStack) -> None:
    scenarios.redis_restart_loses_nothing(stack)
