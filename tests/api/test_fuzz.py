"""Property-based fuzzing of every operation from /openapi.json (schemathesis, in process over WSGI):
no input makes the API answer 5xx, and every response conforms to the document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from jobs_core.config import Settings
from jobs_core.store import JobStore
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support.streams import short_stream

from api.conftest import TASKS, make_app


@pytest.fixture(scope="module")
def fuzz_app(redis_url: str) -> Iterator[Flask]:
    import uuid

    import redis

    ns = f"fz{uuid.uuid4().hex[:8]}"
    s = Settings(redis_url=redis_url, key_prefix=ns, queue=ns)
    store = JobStore.from_settings(s)
    store.publish_tasks(TASKS)
    yield make_app(s, store)
    client = redis.Redis.from_url(redis_url)
    keys = [*client.scan_iter(f"{ns}:*", count=1000), f"hotqueue:{ns}"]
    for i in range(0, len(keys), 500):
        client.delete(*keys[i : i + 500])


@pytest.mark.timeout(240)
def test_no_input_breaks_the_api(fuzz_app: Flask) -> None:
    schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)
    checks = (status_code_conformance, content_type_conformance, response_schema_conformance)
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in ("/docs", "/metrics", "/openapi.json"):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: schemathesis.Case) -> None:
            short_stream(case)
            response = case.call()
            assert response.status_code < 500, (case.method, case.formatted_path, response.status_code,
                                                response.text[:300])
            case.validate_response(response, checks=checks)

        run()
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    assert len(fuzzed) >= 10, fuzzed
