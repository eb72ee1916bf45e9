"""Generate the chart's Grafana dashboard (helm/jobs-api/dashboards/jobs-api.json) from the panel list below.

    .venv/bin/python scripts/dashboard.py          # rewrite the JSON
    .venv/bin/python scripts/dashboard.py --check  # exit 1 when the committed JSON is stale (tests run it)

Every expression uses only metrics the services export (tests/observability/test_metrics_contract.py
scrapes a real API and worker and checks each name and label), plus kube-state-metrics' HPA series for
the KEDA replicas panel. ``$namespace`` and ``$queue`` are dashboard variables. Queue gauges are read
from Redis by every API pod at scrape time, so they are combined with ``max`` (a ``sum`` would count each
queue once per API pod); per-worker series are summed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "helm" / "jobs-api" / "dashboards" / "jobs-api.json"
NS = 'namespace=~"$namespace"'
QNS = f'{NS}, queue=~"$queue"'
RATE = "$__rate_interval"

#: (title, unit, kind, [(expr, legend)], width) per panel, grouped in rows.
ROWS: list[tuple[str, list[tuple[str, str, str, list[tuple[str, str]], int]]]] = [
    ("Queues", [
        ("Jobs by queue and state", "short", "timeseries",
         [(f"max by (queue, state) (jobs_queue_jobs{{{QNS}}})", "{{queue}} {{state}}")], 8),
        ("Oldest waiting job (age)", "s", "timeseries",
         [(f"max by (queue) (jobs_queue_oldest_waiting_age_seconds{{{QNS}}})", "{{queue}}")], 8),
        ("Live workers per queue", "short", "timeseries",
         [(f"max by (queue) (jobs_queue_workers{{{QNS}}})", "{{queue}}")], 8),
    ]),
    ("Submissions", [
        ("Submissions by outcome", "reqps", "timeseries",
         [(f"sum by (outcome) (rate(jobs_api_submissions_total{{{NS}}}[{RATE}]))", "{{outcome}}")], 12),
        ("Accepted submissions by task", "reqps", "timeseries",
         [(f'sum by (task) (rate(jobs_api_submissions_total{{{NS}, outcome="accepted"}}[{RATE}]))', "{{task}}")],
         12),
    ]),
    ("Runs", [
        ("Run time per task (p50 / p95 / p99)", "s", "timeseries",
         [(f"histogram_quantile({q}, sum by (task, le) (rate(jobs_worker_run_seconds_bucket{{{NS}}}[{RATE}])))",
           f"{{{{task}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], 12),
        ("Attempts ended by outcome", "ops", "timeseries",
         [(f"sum by (outcome) (rate(jobs_worker_outcomes_total{{{QNS}}}[{RATE}]))", "{{outcome}}")], 12),
        ("Failures by task", "ops", "timeseries",
         [(f'sum by (task) (rate(jobs_worker_outcomes_total{{{QNS}, outcome=~"failed|retry"}}[{RATE}]))',
           "{{task}}")], 8),
        ("Jobs in the failed index", "short", "stat", [(f"max(jobs_failed_jobs{{{NS}}})", "failed")], 4),
        ("Leases lost (reaper take-backs)", "short", "timeseries",
         [(f"sum by (queue, outcome) (increase(jobs_worker_reaped_total{{{QNS}}}[{RATE}]))", "{{queue}} {{outcome}}"),
          (f"sum by (task) (increase(jobs_worker_lost_total{{{NS}}}[{RATE}]))", "stale outcome {{task}}")], 12),
    ]),
    ("Capacity", [
        ("Worker slots: busy / total", "short", "timeseries",
         [(f"sum(jobs_worker_busy_slots{{{NS}}})", "busy"), (f"sum(jobs_worker_slots{{{NS}}})", "total")], 8),
        ("Worker processes (scraped)", "short", "stat", [(f"count(jobs_worker_slots{{{NS}}})", "workers")], 4),
        ("KEDA replicas (kube-state-metrics, HPA keda-hpa-*)", "short", "timeseries",
         [(f'sum by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_current_replicas{{{NS}, '
           f'horizontalpodautoscaler=~"keda-hpa-.*"}})', "{{horizontalpodautoscaler}} current"),
          (f'sum by (horizontalpodautoscaler) (kube_horizontalpodautoscaler_status_desired_replicas{{{NS}, '
           f'horizontalpodautoscaler=~"keda-hpa-.*"}})', "{{horizontalpodautoscaler}} desired")], 12),
    ]),
    ("API and Redis", [
        ("Redis up (as the API sees it)", "short", "stat", [(f"min(jobs_api_redis_up{{{NS}}})", "up")], 4),
        ("API latency by route (p95)", "s", "timeseries",
         [(f"histogram_quantile(0.95, sum by (route, le) "
           f"(rate(jobs_api_request_duration_seconds_bucket{{{NS}}}[{RATE}])))", "{{route}}")], 10),
        ("API requests by status", "reqps", "timeseries",
         [(f"sum by (status) (rate(jobs_api_request_duration_seconds_count{{{NS}}}[{RATE}]))", "{{status}}")], 10),
    ]),
]


def _panel(pid: int, title: str, unit: str, kind: str, targets: list[tuple[str, str]], x: int, y: int,
           w: int) -> dict[str, Any]:
    panel: dict[str, Any] = {
        "id": pid, "type": kind, "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend,
                     "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                    for i, (expr, legend) in enumerate(targets)],
    }
    if kind == "timeseries":
        panel["options"] = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
                            "tooltip": {"mode": "multi"}}
    else:
        panel["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                            "colorMode": "value", "graphMode": "area"}
    return panel


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": label, "type": "query", "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": f"{name}-var"}, "definition": query, "refresh": 2, "multi": True,
            "includeAll": True, "allValue": ".*", "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1}


def build() -> dict[str, Any]:
    """The dashboard model."""
    panels: list[dict[str, Any]] = []
    pid, y = 1, 0
    for row_title, row in ROWS:
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        pid, y, x = pid + 1, y + 1, 0
        for title, unit, kind, targets, w in row:
            if x + w > 24:
                x, y = 0, y + 8
            panels.append(_panel(pid, title, unit, kind, targets, x, y, w))
            pid, x = pid + 1, x + w
        y += 8
    return {
        "uid": "jobs-api-overview", "title": "Jobs API", "description":
            "Queues, submissions, runs, capacity, KEDA scaling, API and Redis of a Jobs API release "
            "(metrics: the API's /metrics, the workers' JOBS_WORKER_METRICS_PORT, kube-state-metrics).",
        "tags": ["jobs-api"], "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True,
        "refresh": "30s", "time": {"from": "now-3h", "to": "now"}, "graphTooltip": 1,
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            _variable("namespace", "Namespace", "label_values(jobs_api_redis_up, namespace)"),
            _variable("queue", "Queue", 'label_values(jobs_queue_jobs{namespace=~"$namespace"}, queue)'),
        ]},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


def render() -> str:
    """The JSON text as committed."""
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is stale: run .venv/bin/python scripts/dashboard.py", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
