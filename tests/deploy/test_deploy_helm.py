"""The Helm chart with Helm's real engine: lint, render, values schema, documentation, secrets, hooks."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from deploy.manifests import CHART, NAMESPACE, RELEASE, VALUE_SETS, Obj, find, one, pod_spec, render_chart

REQUIRED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "helm.sh/chart",
)


def _lint_errors(path: Path, values: dict[str, Any] | None = None) -> list[str]:
    report = helm.lint(str(path), values, strict=True, namespace=NAMESPACE)
    return [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2] + report["errors"]


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_strict_is_clean(value_set: str) -> None:
    assert _lint_errors(CHART, VALUE_SETS[value_set]) == []


def test_lint_catches_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "jobs-api"
    shutil.copytree(CHART, broken)
    path = broken / "templates" / "api-service.yaml"
    path.write_text(path.read_text().replace("{{ .Values.api.service.type }}", "{{ .Values.api.service.type "))
    assert _lint_errors(broken)


def test_six_or_more_value_sets_render(rendered: dict[str, list[Obj]]) -> None:
    assert len(rendered) >= 6
    for name, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert {"Deployment", "ConfigMap", "Service", "ServiceAccount"} <= kinds, name
        assert {"Role", "RoleBinding"} <= kinds or name == "minimal-no-ingress", name


INVALID_VALUES: dict[str, dict[str, Any]] = {
    "unknown-top-level-key": {"replicaCount": 3},
    "typo-in-nested-key": {"api": {"replicas": 3}},
    "latest-api-tag": {"api": {"image": {"tag": "latest"}}},
    "empty-worker-tag": {"worker": {"image": {"tag": ""}}},
    "zero-concurrency": {"worker": {"concurrency": 0}},
    "string-replicas": {"api": {"replicaCount": "two"}},
    "bad-fsync": {"redis": {"appendfsync": "sometimes"}},
    "bad-log-level": {"config": {"logLevel": "VERBOSE"}},
    "bad-queue-name": {"config": {"queue": "jobs queue"}},
    "extra-env-not-jobs": {"config": {"extraEnv": {"PATH": "/evil"}}},
    "root-allowed": {"podSecurityContext": {"runAsNonRoot": False}},
    "writable-root-fs": {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
    "external-redis-without-url": {"redis": {"enabled": False}},
    "external-url-not-redis": {"redis": {"enabled": False, "external": {"url": "http://redis:6379"}}},
    "bad-cpu-quantity": {"api": {"resources": {"requests": {"cpu": "lots", "memory": "1Gi"},
                                               "limits": {"cpu": "1", "memory": "1Gi"}}}},
    "missing-limits": {"worker": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": None}}},
    "grace-not-above-drain": {"worker": {"drainSeconds": 40, "terminationGracePeriodSeconds": 40}},
    "min-above-max": {"autoscaling": {"minReplicaCount": 5, "maxReplicaCount": 2}},
    "pool-name-twice": {"workerPools": [{"name": "default"}, {"name": "default", "queues": ["gpu"]}]},
    "pool-name-not-dns": {"workerPools": [{"name": "GPU_pool"}]},
    "pool-mode-unknown": {"workerPools": [{"name": "default", "mode": "cronjob"}]},
    "pool-job-without-keda": {"autoscaling": {"enabled": False}, "workerPools": [{"name": "b", "mode": "job"}]},
    "pool-bad-queue": {"workerPools": [{"name": "default", "queues": ["gpu:1"]}]},
    "pool-env-shadows": {"workerPools": [{"name": "default", "env": {"JOBS_QUEUES": "x"}}]},
    "pool-min-above-max": {"workerPools": [{"name": "default", "minReplicaCount": 3, "maxReplicaCount": 2}]},
    "pool-typo": {"workerPools": [{"name": "default", "replicas": 3}]},
    "no-pools": {"workerPools": []},
    "external-redis-auth-without-secret": {
        "redis": {"enabled": False, "external": {"url": "redis://r.example.com:6379/0"}},
    },
}


@pytest.mark.parametrize("case", sorted(INVALID_VALUES))
def test_invalid_values_are_rejected(case: str) -> None:
    with pytest.raises((helm.HelmValuesError, helm.HelmRenderError)):
        render_chart(INVALID_VALUES[case])


def test_schema_rejects_what_lint_reports() -> None:
    """`helm install` validates values against the schema before rendering: same verdict as lint."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema({})
        with pytest.raises(helm.HelmValuesError, match="tag"):
            chart.validate_schema({"api": {"image": {"tag": "latest"}}})


def _value_paths(tree: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from _value_paths(value, path)


def test_every_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []
    documented: dict[str, bool] = {}
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][A-Za-z0-9_]*):", line)
        if not m:
            continue
        indent, key = len(m.group(1)), m.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        stack.append((indent, key))
        comment = lines[i - 1].strip() if i else ""
        documented[path] = comment.startswith(f"# {path} ")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(documented) == set(_value_paths(values)), "the line scan missed keys"
    assert [p for p, ok in documented.items() if not ok] == []


def test_schema_covers_every_value_and_rejects_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], tree: Any, path: str) -> None:
        if not isinstance(tree, dict) or node.get("type") != "object" or "properties" not in node:
            return
        assert node.get("additionalProperties") is False, f"{path or '<root>'} accepts unknown keys"
        for key, value in tree.items():
            assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
            walk(node["properties"][key], value, f"{path}.{key}" if path else key)

    walk(schema, values, "")


def test_one_resource_per_template_file() -> None:
    """One resource per template file; the per-pool templates render it once per worker pool."""
    with helm.Chart.load(str(CHART)) as chart:
        for values in VALUE_SETS.values():
            pools = len(values.get("workerPools", [None]))
            for path, text in chart.render(values, name=RELEASE, namespace=NAMESPACE).items():
                docs = [d for d in yaml.safe_load_all(text) if d] if path.endswith(".yaml") else []
                assert len({d["kind"] for d in docs}) <= 1, path
                names = [d["metadata"]["name"] for d in docs]
                assert len(names) == len(set(names)) and len(docs) <= max(1, pools), path


def test_labels_and_selector_labels(rendered: dict[str, list[Obj]]) -> None:
    for name, objects in rendered.items():
        for obj in objects:
            labels = obj["metadata"].get("labels", {})
            missing = [label for label in REQUIRED_LABELS if label not in labels]
            assert not missing, f"{name} {obj['kind']}/{obj['metadata']['name']} lacks {missing}"
            assert labels["app.kubernetes.io/instance"] == RELEASE
            if obj["kind"] in ("Deployment", "StatefulSet"):
                selector = obj["spec"]["selector"]["matchLabels"]
                assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                                         "app.kubernetes.io/component"}
                assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items()


def _annotations(objects: list[Obj], component: str) -> dict[str, str]:
    workload = one(objects, "Deployment", component)
    return dict(workload["spec"]["template"]["metadata"]["annotations"])


@pytest.mark.parametrize("component", ["api", "worker"])
def test_checksums_roll_pods_when_config_or_secrets_change(component: str) -> None:
    base = _annotations(render_chart({"redis": {"auth": {"password": "a"}}, "apiKeys": {"keys": "t:k"}}), component)
    assert {"checksum/config", "checksum/redis-secret", "checksum/api-keys-secret"} <= set(base)
    changed_config = _annotations(
        render_chart({"redis": {"auth": {"password": "a"}}, "apiKeys": {"keys": "t:k"},
                      "config": {"logLevel": "DEBUG"}}), component)
    assert changed_config["checksum/config"] != base["checksum/config"]
    assert changed_config["checksum/redis-secret"] == base["checksum/redis-secret"]
    changed_password = _annotations(
        render_chart({"redis": {"auth": {"password": "b"}}, "apiKeys": {"keys": "t:k"}}), component)
    assert changed_password["checksum/redis-secret"] != base["checksum/redis-secret"]
    assert changed_password["checksum/config"] == base["checksum/config"]
    changed_keys = _annotations(
        render_chart({"redis": {"auth": {"password": "a"}}, "apiKeys": {"keys": "t:k2"}}), component)
    assert changed_keys["checksum/api-keys-secret"] != base["checksum/api-keys-secret"]


def _secret_refs(objects: list[Obj]) -> set[tuple[str, str]]:
    refs: set[tuple[str, str]] = set()
    for obj in objects:
        spec = pod_spec(obj)
        for container in (spec or {}).get("containers", []):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
        for volume in (spec or {}).get("volumes", []):
            if "secret" in volume:
                for item in volume["secret"].get("items", []):
                    refs.add((volume["secret"]["secretName"], item["key"]))
        if obj["kind"] == "TriggerAuthentication":
            refs |= {(r["name"], r["key"]) for r in obj["spec"]["secretTargetRef"]}
    return refs


def test_existing_secrets_are_used_and_none_generated(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["existing-secrets"]
    assert find(objects, "Secret") == []
    # ui-secret: an optional reference (absent from corp-api-keys: the API keeps a console secret in Redis)
    assert _secret_refs(objects) == {("corp-redis", "pw"), ("corp-api-keys", "keys.txt"),
                                     ("corp-api-keys", "ui-secret")}


def test_generated_secrets_exist_for_every_reference(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["defaults"]
    secrets = {s["metadata"]["name"]: s for s in find(objects, "Secret")}
    for name, key in _secret_refs(objects):
        assert key in secrets[name]["data"], (name, key)
    keys = secrets[f"{RELEASE}-jobs-api-api-keys"]["data"]["api-keys"]
    tenant, _, key = base64.b64decode(keys).decode().partition(":")
    assert tenant == "default" and len(key) >= 32


def test_generated_secrets_reuse_what_lookup_finds(tmp_path: Path) -> None:
    """Offline, `lookup` finds nothing; stand in for a cluster by replacing it with the Secret an earlier
    install left, and check the upgrade renders the same password and keys (and so the same checksums)."""
    chart = tmp_path / "jobs-api"
    shutil.copytree(CHART, chart)
    stored = {"secret-redis.yaml": {"redis-password": "kept-password"},
              "secret-api-keys.yaml": {"api-keys": "t:kept", "ui-secret": "kept-console-secret"}}
    for template, values in stored.items():
        path = chart / "templates" / template
        pairs = " ".join(f'"{k}" "{base64.b64encode(v.encode()).decode()}"' for k, v in values.items())
        text = path.read_text()
        assert 'lookup "v1" "Secret" .Release.Namespace $name' in text
        path.write_text(text.replace('lookup "v1" "Secret" .Release.Namespace $name', f'dict "data" (dict {pairs})'))
    with helm.Chart.load(str(chart)) as loaded:
        first, again = (
            [d for p, t in loaded.render({}, name=RELEASE, namespace=NAMESPACE).items() if p.endswith(".yaml")
             for d in yaml.safe_load_all(t) if isinstance(d, dict)]
            for _ in range(2)
        )
    data = {k: base64.b64decode(v).decode() for s in find(first, "Secret") for k, v in s["data"].items()}
    assert data == {"redis-password": "kept-password", "api-keys": "t:kept", "ui-secret": "kept-console-secret"}
    assert _annotations(first, "api") == _annotations(again, "api")
    # and without a stored Secret each render generates anew (offline lookup is empty)
    fresh = [base64.b64decode(s["data"]["redis-password"]) for s in
             (one(render_chart({}), "Secret", "redis"), one(render_chart({}), "Secret", "redis"))]
    assert fresh[0] != fresh[1] and len(fresh[0]) == 32


def test_ingress_tls_and_service_monitor(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["ingress-tls"]
    ingress = one(objects, "Ingress", "api")
    assert ingress["spec"]["tls"] == [{"hosts": ["jobs.acme.example"], "secretName": "jobs-acme-tls"}]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "tls" not in one(rendered["defaults"], "Ingress", "api")["spec"]
    assert find(rendered["defaults"], "ServiceMonitor") == []
    assert find(rendered["minimal-no-ingress"], "Ingress") == []


def _notes(values: dict[str, Any]) -> str:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)["jobs-api/templates/NOTES.txt"]


def test_notes_give_the_next_commands(rendered: dict[str, list[Obj]]) -> None:
    notes = _notes({})
    api = one(rendered["defaults"], "Deployment", "api")["metadata"]["name"]
    keys_secret = next(s for s in find(rendered["defaults"], "Secret") if "api-keys" in s["data"])
    assert f"rollout status deployment/{api}" in notes
    assert f"get secret {keys_secret['metadata']['name']}" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert "http://jobs.example.com" in notes
    assert "port-forward service/" in _notes({"ingress": {"enabled": False}})


# --- the `helm test` hook ----------------------------------------------------------------------------


def _test_pod(objects: list[Obj]) -> Obj:
    pods = [o for o in objects if o["kind"] == "Pod"]
    assert len(pods) == 1
    return pods[0]


def test_test_hook_pod_targets_the_api_service(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["defaults"]
    pod = _test_pod(objects)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == one(objects, "Deployment", "api")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["command"] == ["python", "-c"]
    service = one(objects, "Service", "api")
    assert f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}" in container["args"][0]
    assert pod["metadata"]["labels"]["jobs-api/client"] == "true"


class _FakeApi(BaseHTTPRequestHandler):
    """Answers like the Jobs API: POST /jobs -> 202, GET /jobs/<id> -> queued, running, then final."""

    final = "succeeded"
    seen: list[tuple[str, str, str, bytes]] = []
    polls = 0

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(("POST", self.path, self.headers.get("Authorization", ""), body))
        self._send(202, {"id": "j1", "status": "queued"})

    def do_GET(self) -> None:
        type(self).seen.append(("GET", self.path, self.headers.get("Authorization", ""), b""))
        type(self).polls += 1
        status = ["queued", "running"][type(self).polls - 1] if type(self).polls <= 2 else type(self).final
        self._send(200, {"id": "j1", "status": status})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("final", "exit_ok"), [("succeeded", True), ("failed", False)])
def test_test_hook_script_submits_echo_and_waits_for_succeeded(
    rendered: dict[str, list[Obj]], tmp_path: Path, final: str, exit_ok: bool
) -> None:
    """Run the hook's script for real against a local stand-in for the API Service."""
    objects = rendered["minimal-no-ingress"]  # keys alice:key-a,bob:key-b
    container = _test_pod(objects)["spec"]["containers"][0]
    service = one(objects, "Service", "api")
    handler = type("Handler", (_FakeApi,), {"final": final, "seen": [], "polls": 0})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        keys_file = tmp_path / "api-keys"
        keys_file.write_text("alice:key-a,bob:key-b")
        script = container["args"][0]
        script = script.replace(
            f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}",
            f"http://127.0.0.1:{server.server_port}",
        ).replace("/etc/jobs-api/keys/api-keys", str(keys_file)).replace("time.sleep(1)", "time.sleep(0.01)")
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (proc.returncode == 0) is exit_ok, proc.stdout + proc.stderr
    method, path, auth, body = handler.seen[0]
    assert (method, path, auth) == ("POST", "/jobs", "Bearer key-a")
    assert json.loads(body) == {"task": "echo", "params": {}}
    assert [(m, p) for m, p, _, _ in handler.seen[1:]] == [("GET", "/jobs/j1")] * 3
