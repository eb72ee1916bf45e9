"""Operations endpoints: ``/healthz`` (liveness), ``/readyz`` (Redis reachable), ``/metrics``."""

from __future__ import annotations

from flask import Blueprint, Response

from jobs_api import metrics
from jobs_api.lifecycle import SHUTTING_DOWN
from jobs_api.problems import REDIS_UNAVAILABLE, service_unavailable
from jobs_api.state import json_response, state

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers; touches nothing else (a Redis outage must not restart API pods)."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """200 when Redis answers a PING, else 503 with Retry-After (the pod leaves the Service).

    Also 503 once the process is stopping, so load balancers stop sending it new requests.
    """
    if SHUTTING_DOWN.is_set():
        raise service_unavailable("not ready: shutting down")
    try:
        state().store.ping()
    except REDIS_UNAVAILABLE as e:
        raise service_unavailable("not ready: Redis is unreachable") from e
    return json_response({"status": "ready"})


@bp.get("/metrics")
def metrics_view() -> Response:
    """Prometheus exposition: samples of every gunicorn worker plus queue counts read now from Redis."""
    store = state().store
    body, content_type = metrics.render(store.metrics_snapshot, store.oldest_waiting_ages)
    return Response(body, status=200, content_type=content_type)
