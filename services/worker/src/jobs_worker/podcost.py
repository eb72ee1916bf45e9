"""Tell Kubernetes which worker pods are busy, so scale-in removes idle ones first.

Sets the pod's ``controller.kubernetes.io/pod-deletion-cost`` annotation: high while the worker runs a
job, low when idle. Patching happens on a background thread and its failures are logged, never fatal.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

log = logging.getLogger("jobs.worker.podcost")

ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
BUSY_COST = "10000"
IDLE_COST = "-10000"


class PodDeletionCost:
    """Patches the deletion cost of this pod when POD_NAME and POD_NAMESPACE are set; else does nothing."""

    def __init__(self, pod_name: str | None, namespace: str | None, api: Any = None) -> None:
        self.enabled = bool(pod_name and namespace)
        self.pod_name = pod_name
        self.namespace = namespace
        self._api = api
        self._state: bool | None = None
        self._queue: queue.Queue[bool | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="pod-deletion-cost", daemon=True)
            self._thread.start()

    def set_busy(self, busy: bool) -> None:
        """Record the worker's state; patches only when it changed."""
        if not self.enabled or busy == self._state:
            return
        self._state = busy
        self._queue.put(busy)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the background thread after pending patches."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            config.load_incluster_config()
            self._api = client.CoreV1Api()
        return self._api

    def patch(self, busy: bool) -> None:
        """Patch the annotation now (raises on failure)."""
        body = {"metadata": {"annotations": {ANNOTATION: BUSY_COST if busy else IDLE_COST}}}
        self._client().patch_namespaced_pod(self.pod_name, self.namespace, body)

    def _run(self) -> None:
        while True:
            busy = self._queue.get()
            if busy is None:
                return
            while not self._queue.empty():  # only the latest state matters
                nxt = self._queue.get()
                if nxt is None:
                    return
                busy = nxt
            try:
                self.patch(busy)
            except Exception as e:  # never fatal: scale-in order is an optimisation
                log.warning("could not patch pod deletion cost", extra={"error": str(e)[:500]})
