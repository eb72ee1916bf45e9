"""Problem details for every error kind, Redis outages, health, metrics, tasks, OpenAPI and docs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jobs_api.openapi import build_spec
from jobs_core.config import Settings

from api.conftest import TASKS, make_app
from api.contract import Contract


def test_unknown_path_is_404_problem(client: FlaskClient) -> None:
    resp = client.get("/no/such/thing")
    assert resp.status_code == 404
    assert resp.content_type == "application/problem+json"
    assert resp.get_json(force=True)["instance"] == "/no/such/thing"


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("PUT", "/jobs", {"GET", "POST"}),
        ("PATCH", "/jobs/00000000-0000-4000-8000-000000000000", {"GET", "DELETE"}),
        ("GET", "/jobs/00000000-0000-4000-8000-000000000000/retry", {"POST"}),
        ("POST", "/tasks", {"GET"}),
        ("DELETE", "/healthz", {"GET"}),
    ],
)
def test_wrong_method_is_405_with_allow(client: FlaskClient, method: str, url: str, allowed: set[str]) -> None:
    resp = client.open(url, method=method)
    assert resp.status_code == 405
    assert resp.content_type == "application/problem+json"
    assert allowed <= {m.strip() for m in resp.headers["Allow"].split(",")}


def test_unexpected_errors_are_500_without_a_stack_trace(settings: Settings) -> None:
    app = make_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail")

    resp = app.test_client().get("/boom")
    assert resp.status_code == 500
    assert resp.content_type == "application/problem+json"
    text = resp.get_data(as_text=True)
    assert "secret internal detail" not in text and "Traceback" not in text and "RuntimeError" not in text


@pytest.fixture
def down(settings: Settings) -> FlaskClient:
    """An app whose Redis is unreachable (nothing listens on that port)."""
    dead = settings.replace(redis_url="redis://127.0.0.1:1/0")
    return make_app(dead).test_client()


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/jobs"),
        ("GET", "/jobs"),
        ("GET", "/jobs/00000000-0000-4000-8000-000000000000"),
        ("GET", "/jobs/00000000-0000-4000-8000-000000000000?wait=5"),
        ("GET", "/jobs/00000000-0000-4000-8000-000000000000/result"),
        ("DELETE", "/jobs/00000000-0000-4000-8000-000000000000"),
        ("POST", "/jobs/00000000-0000-4000-8000-000000000000/retry"),
        ("GET", "/tasks"),
        ("GET", "/tasks/echo"),
        ("GET", "/readyz"),
    ],
)
def test_redis_down_is_503_with_retry_after(down: FlaskClient, method: str, url: str) -> None:
    resp = down.open(url, method=method, json={"task": "echo"} if method == "POST" else None)
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.content_type == "application/problem+json"
    assert "Traceback" not in resp.get_data(as_text=True)


def test_health_and_metrics_survive_redis_down(down: FlaskClient) -> None:
    assert down.get("/healthz").get_json() == {"status": "ok"}
    metrics = down.get("/metrics")
    assert metrics.status_code == 200
    assert "jobs_api_redis_up 0.0" in metrics.get_data(as_text=True)


def test_readyz_and_healthz(client: FlaskClient) -> None:
    assert client.get("/readyz").get_json() == {"status": "ready"}
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_metrics_expose_queue_counts_and_latency(client: FlaskClient, submit: Any, settings: Settings) -> None:
    submit("echo")
    submit("echo", delay=60)
    text = client.get("/metrics").get_data(as_text=True)
    q = settings.queue
    assert f'jobs_queue_jobs{{queue="{q}",state="queued"}} 1.0' in text
    assert f'jobs_queue_jobs{{queue="{q}",state="delayed"}} 1.0' in text
    assert f'jobs_queue_jobs{{queue="{q}",state="running"}} 0.0' in text
    assert f'jobs_queue_jobs{{queue="{q}",state="unrunnable"}} 0.0' in text
    assert "jobs_failed_jobs 0.0" in text
    assert re.search(r'jobs_api_request_duration_seconds_count\{method="POST",route="/jobs",status="202"\} \d', text)


def test_tasks_list_and_get(client: FlaskClient) -> None:
    tasks = client.get("/tasks").get_json()["tasks"]
    assert [t["name"] for t in tasks] == sorted(t.name for t in TASKS)
    sleep = client.get("/tasks/sleep").get_json()
    assert sleep["defaults"] == {"seconds": 1}
    assert sleep["params_schema"]["properties"]["seconds"]["type"] == "number"
    resp = client.get("/tasks/nope")
    assert resp.status_code == 404 and resp.content_type == "application/problem+json"


def test_request_id_is_echoed_or_made(client: FlaskClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id;" + "x" * 200}).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)


def test_served_openapi_is_the_one_the_tests_check_against(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    assert spec == build_spec()
    assert spec["openapi"].startswith("3.1")


def test_openapi_schemas_are_valid_json_schema(contract: Contract) -> None:
    from jsonschema import Draft202012Validator

    for name, schema in contract.spec["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema), name


def test_openapi_documents_exactly_the_routes_the_app_serves(app: Flask) -> None:
    spec = build_spec()
    documented = {
        (re.sub(r"\{[^}]+\}", "<>", path), method.upper())
        for path, ops in spec["paths"].items()
        for method in ops
    }
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith(("/docs/", "/ui")):
            continue  # Swagger UI's own assets; the console's HTML pages (tests/console) are not API
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                served.add((re.sub(r"<[^>]+>", "<>", rule.rule), method))
    assert served == documented


def test_every_operation_documents_its_errors(contract: Contract) -> None:
    for path, ops in contract.spec["paths"].items():
        for method, op in ops.items():
            if path.startswith(("/jobs", "/tasks", "/schedules", "/workflows")):
                assert {"401", "503"} <= set(op["responses"]), (method, path)
                assert op["security"] == [{"bearerAuth": []}]


def test_docs_page_loads_only_local_assets(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, html
    for ref in refs:
        assert ref.startswith("/"), ref
        resp = client.get(ref)
        assert resp.status_code == 200, ref
        assert len(resp.get_data()) > 100
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").get_data(as_text=True)
    assert "SwaggerUIBundle" in bundle
    assert client.get("/docs/assets/../../app.py").status_code == 404
    assert client.get("/docs/assets/LICENSE").status_code == 404


def test_contract_checker_catches_a_mismatch(contract: Contract) -> None:
    # the checker used on every response would fail on a body that drifts from the document
    with pytest.raises(AssertionError):
        contract.check("GET", "/jobs", 200, "application/json", b'{"jobs": [], "next_cursor": null, "x": 1}')
    with pytest.raises(AssertionError):
        contract.check("GET", "/jobs", 418, "application/json", b"{}")
    with pytest.raises(AssertionError):
        contract.check("GET", "/tasks", 401, "application/problem+json", b'{"title": "x"}')


def test_metric_labels_stay_bounded(client: FlaskClient) -> None:
    for i in range(5):
        client.open(f"/random/{i}", method=f"X{i}")
        client.get(f"/random/path/{i}")
    text = client.get("/metrics").get_data(as_text=True)
    assert "/random" not in text and 'method="X1"' not in text
    assert 'route="unmatched"' in text and 'method="other"' in text


def test_redis_out_of_memory_is_503_not_500(private_redis: Any, settings: Settings) -> None:
    from jobs_core.store import JobStore

    own = settings.replace(redis_url=private_redis.url)
    store = JobStore.from_settings(own)
    store.publish_tasks(TASKS)
    client = make_app(own, store).test_client()
    assert client.post("/jobs", json={"task": "echo"}).status_code == 202
    admin = private_redis.client()
    admin.config_set("maxmemory-policy", "noeviction")
    # far below what Redis uses: every write is refused. (used + 1 kB was flaky: Redis's cron shrinks idle
    # clients' query buffers, ~50 kB here, and the next submissions then fit and were rightly stored)
    admin.config_set("maxmemory", 1)
    statuses = {client.post("/jobs", json={"task": "echo", "params": {"pad": "x" * 2000}}).status_code
                for _ in range(20)}
    assert 503 in statuses and 500 not in statuses
    resp = client.post("/jobs", json={"task": "echo", "params": {"pad": "x" * 2000}})
    assert resp.status_code == 503 and "out of memory" in resp.get_json(force=True)["detail"]
    assert int(resp.headers["Retry-After"]) > 0
    assert client.get("/jobs").status_code == 200  # reads still work
    admin.config_set("maxmemory", 0)
    assert client.post("/jobs", json={"task": "echo"}).status_code == 202


def test_readyz_is_503_once_shutting_down(client: FlaskClient) -> None:
    from jobs_api.lifecycle import SHUTTING_DOWN

    SHUTTING_DOWN.set()
    try:
        resp = client.get("/readyz")
        assert resp.status_code == 503 and "shutting down" in resp.get_json(force=True)["detail"]
        assert client.get("/healthz").status_code == 200  # alive while it drains
    finally:
        SHUTTING_DOWN.clear()
    assert client.get("/readyz").status_code == 200
