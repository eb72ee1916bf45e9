"""Pod deletion cost: the real kubernetes client, its HTTP layer answered by a local stub server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jobs_worker.podcost import ANNOTATION, BUSY_COST, IDLE_COST, PodDeletionCost
from kubernetes import client
from support.procs import wait_for


class Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str, Any]] = []
        self.status = 200


@pytest.fixture
def apiserver() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        # every verb is recorded and answered: the worker's Role grants `patch` only, so a test below
        # asserts nothing else is ever sent
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            recorder.requests.append((self.command, self.path, self.headers.get("Content-Type", ""), body))
            payload = json.dumps({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "w"}}).encode()
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield recorder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def core_api(host: str) -> client.CoreV1Api:
    config = client.Configuration()
    config.host = host
    return client.CoreV1Api(client.ApiClient(config))


def test_busy_and_idle_patch_the_annotation(apiserver: tuple[Recorder, str]) -> None:
    recorder, host = apiserver
    cost = PodDeletionCost("worker-0", "jobs", api=core_api(host))
    cost.set_busy(True)
    wait_for(lambda: len(recorder.requests) == 1, 5, what="busy patch")
    cost.set_busy(True)  # no change, no request
    cost.set_busy(False)
    wait_for(lambda: len(recorder.requests) == 2, 5, what="idle patch")
    cost.close()
    (m1, path, ctype, body), (_, _, _, body2) = recorder.requests
    assert m1 == "PATCH" and path == "/api/v1/namespaces/jobs/pods/worker-0"
    assert "patch" in ctype or "merge" in ctype
    assert body == {"metadata": {"annotations": {ANNOTATION: BUSY_COST}}}
    assert body2 == {"metadata": {"annotations": {ANNOTATION: IDLE_COST}}}


def test_patch_failure_is_logged_not_fatal(apiserver: tuple[Recorder, str], caplog: pytest.LogCaptureFixture) -> None:
    recorder, host = apiserver
    recorder.status = 403
    cost = PodDeletionCost("worker-0", "jobs", api=core_api(host))
    cost.set_busy(True)
    wait_for(lambda: "could not patch pod deletion cost" in caplog.text, 5, what="warning")
    cost.set_busy(False)  # still working after a failure
    wait_for(lambda: len(recorder.requests) == 2, 5, what="second patch")
    cost.close()


def test_disabled_without_pod_identity() -> None:
    cost = PodDeletionCost(None, "jobs", api=object())
    assert not cost.enabled
    cost.set_busy(True)  # does nothing, needs no cluster
    cost.close()


def test_only_patch_requests_reach_the_api_server(apiserver: tuple[Recorder, str]) -> None:
    """Issue 10 #7: the worker Role grants `patch` on pods and nothing else; the worker must never need
    more (no GET before the PATCH, no PUT), busy or idle, across repeated changes."""
    recorder, host = apiserver
    cost = PodDeletionCost("worker-0", "jobs", api=core_api(host))
    for n, busy in enumerate((True, False, True, False), start=1):
        cost.set_busy(busy)
        wait_for(lambda n=n: len(recorder.requests) == n, 5, what="patch")
    cost.close()
    assert {m for m, _, _, _ in recorder.requests} == {"PATCH"}
    assert {p for _, p, _, _ in recorder.requests} == {"/api/v1/namespaces/jobs/pods/worker-0"}
