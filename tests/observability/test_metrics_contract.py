"""The dashboard and the alerts stay true to the code: every expression parses as PromQL, and every metric
and label it uses is in the real ``/metrics`` output of a running API (gunicorn) and worker after some jobs.
A renamed metric or label breaks this test, not an operator's dashboard."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.stack import ApiStack, free_port, http
from tests.deploy.manifests import VALUE_SETS, render_chart
from tests.support.procs import wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "helm" / "jobs-api" / "dashboards" / "jobs-api.json"
#: Labels Prometheus adds to every scraped series (target labels), not the services.
TARGET_LABELS = {"namespace", "pod", "job", "instance", "service", "container", "endpoint"}
#: Series from other exporters the dashboard uses, with their labels: kube-state-metrics' HPA metrics (KEDA
#: drives a ScaledObject's Deployment through an HPA named keda-hpa-<ScaledObject name>).
EXTERNAL = {
    "kube_horizontalpodautoscaler_status_current_replicas": {"horizontalpodautoscaler"},
    "kube_horizontalpodautoscaler_status_desired_replicas": {"horizontalpodautoscaler"},
}
#: Metrics a service exports only once it has counted something (no job here has a callback_url): their
#: names and labels as the code declares them; once a scrape has the metric, its real labels are checked.
PENDING = {
    # webhooks (jobs_api.metrics.WEBHOOK_DELIVERIES): outcome delivered | failed | refused | expired
    "jobs_webhook_deliveries_total": {"outcome"},
}
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$queue": ".*"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, set[str]]]:
    """Sample name -> label names, from a real API and a real worker scraped after jobs ran and failed."""
    worker_port = free_port()
    stack = ApiStack(tmp_path_factory.mktemp("contract"), redis_url, workers=1,
                     extra_env={"JOBS_WORKER_METRICS_PORT": str(worker_port)}).start()
    try:
        ids = []
        for body in ({"task": "echo", "params": {"a": 1}}, {"task": "fail"}, {"task": "nope"}):
            status, _, raw = http("POST", stack.url + "/jobs", body)
            if status == 202:
                ids.append(json.loads(raw)["id"])
        for job_id in ids:
            wait_for(lambda j=job_id: json.loads(http("GET", f"{stack.url}/jobs/{j}?wait=2")[2])["status"]
                     in ("succeeded", "failed"), 60, 0.1, f"job {job_id} done")
        samples: dict[str, set[str]] = {}
        for url in (stack.url + "/metrics", f"http://127.0.0.1:{worker_port}/metrics"):
            status, _, body = http("GET", url)
            assert status == 200
            for family in text_string_to_metric_families(body.decode()):
                for sample in family.samples:
                    samples.setdefault(sample.name, set()).update(sample.labels)
        yield samples
    finally:
        stack.stop()


def _dashboard_expressions() -> list[str]:
    model = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in model["panels"] for t in p.get("targets", [])]
    for var in model["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):  # label_values(<series selector>, <label>)
            m = re.fullmatch(r"label_values\((.*), *([a-z_]+)\)", query["query"])
            assert m, query
            exprs.append(f"count by ({m.group(2)}) ({m.group(1)})")
    return exprs


def _alert_expressions() -> list[tuple[str, str]]:
    objects = render_chart(VALUE_SETS["observability"])
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    return [(r["alert"], r["expr"]) for g in rule["spec"]["groups"] for r in g["rules"]]


def _substitute(expr: str) -> str:
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def _used(expr: str) -> tuple[set[str], set[str]]:
    """Metric names and label names an expression uses (selectors, matchers, by/without/on/ignoring)."""
    metrics: set[str] = set()
    labels: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr}"
            metrics.add(node.name)
            labels.update(m.name for m in node.matchers.matchers if m.name != "__name__")
        modifier = getattr(node, "modifier", None)
        if isinstance(node, promql_parser.AggregateExpr | promql_parser.BinaryExpr) and modifier is not None:
            matching = getattr(modifier, "matching", None) if isinstance(node, promql_parser.BinaryExpr) else modifier
            if matching is not None:
                labels.update(matching.labels)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return metrics, labels


def test_every_expression_parses_as_promql() -> None:
    exprs = [_substitute(e) for e in _dashboard_expressions()] + [e for _, e in _alert_expressions()]
    assert len(exprs) >= 20
    for expr in exprs:
        promql_parser.parse(expr)  # raises on a syntax error
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (queue (jobs_queue_jobs)")  # the check can fail


def test_every_alert_has_a_runbook_anchor_in_the_readme() -> None:
    objects = render_chart(VALUE_SETS["observability"])
    rule = next(o for o in objects if o["kind"] == "PrometheusRule")
    readme = (ROOT / "README.md").read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.*)$", readme, re.M)}
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {r["alert"] for r in alerts} >= {"JobsQueueNoWorkers", "JobsQueueOldestWaiting", "JobsTaskFailureRate",
                                            "JobsRedisDown", "JobsApiErrors", "JobsWorkersLosingLeases",
                                            "JobsWebhookDeliveriesFailing"}
    for r in alerts:
        url = r["annotations"]["runbook_url"]
        assert url.startswith("https://git.example.com/jobs-api/blob/main/README.md#"), url
        assert url.split("#", 1)[1] in headings, f"{r['alert']}: no README heading for {url}"
        assert r["labels"]["severity"] in ("warning", "critical")


def test_thresholds_come_from_values() -> None:
    alerts = dict(_alert_expressions())
    assert alerts["JobsQueueOldestWaiting"].rstrip().endswith("> 300")
    assert alerts["JobsTaskFailureRate"].rstrip().endswith("> 0.25")
    assert 'namespace="jobs"' in alerts["JobsRedisDown"]


def test_dashboard_json_is_generated_from_scripts_dashboard() -> None:
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "dashboard.py"), "--check"], capture_output=True)
    assert run.returncode == 0, run.stderr.decode()


def test_every_metric_and_label_used_is_exported(exported: dict[str, set[str]]) -> None:
    known = {**PENDING, **{k: set(v) for k, v in exported.items()}, **EXTERNAL}
    expressions = [("dashboard", _substitute(e)) for e in _dashboard_expressions()] + _alert_expressions()
    problems = []
    for where, expr in expressions:
        metrics, labels = _used(expr)
        for metric in sorted(metrics - set(known)):
            problems.append(f"{where}: metric {metric} is not exported ({expr})")
        available = set().union(*(known.get(m, set()) for m in metrics)) | TARGET_LABELS
        for label in sorted(labels - available):
            problems.append(f"{where}: label {label} is on none of {sorted(metrics)} ({expr})")
    assert not problems, "\n".join(problems)
    # the scrape really has what the new panels need (not only their names in EXTERNAL/PENDING)
    for name in ("jobs_queue_oldest_waiting_age_seconds", "jobs_worker_slots", "jobs_worker_reaped_total",
                 "jobs_worker_run_seconds_bucket", "jobs_api_request_duration_seconds_bucket"):
        assert name in exported, name
    assert {"task", "le"} <= exported["jobs_worker_run_seconds_bucket"]


def test_pending_metrics_are_declared_by_the_code() -> None:
    from jobs_api.metrics import WEBHOOK_DELIVERIES

    assert f"{WEBHOOK_DELIVERIES._name}_total" in PENDING
    assert set(WEBHOOK_DELIVERIES._labelnames) == PENDING[f"{WEBHOOK_DELIVERIES._name}_total"]


def test_the_contract_check_catches_a_renamed_metric(exported: dict[str, set[str]]) -> None:
    metrics, labels = _used('sum by (queue) (jobs_queue_depth{state="queued"})')
    assert metrics - set(exported) == {"jobs_queue_depth"}
    assert labels == {"queue", "state"}
