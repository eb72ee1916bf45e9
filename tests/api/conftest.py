"""Fixtures of the API contract tests: the Flask app on a per-test namespace of the real Redis, a test
client that validates every response against /openapi.json, published tasks, and a helper that runs a
job to an outcome through the same store calls a worker makes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jobs_api.app import create_app
from jobs_api.openapi import build_spec
from jobs_core.config import Settings
from jobs_core.model import Job, JobError, Result, TaskInfo
from jobs_core.store import JobStore
from werkzeug.test import TestResponse

from api.contract import Contract

TASKS = [
    TaskInfo("echo", "Return the params.", {"type": "object"}),
    TaskInfo(
        "sleep",
        "Sleep.",
        {
            "type": "object",
            "properties": {"seconds": {"type": "number", "minimum": 0, "maximum": 86400}},
            "additionalProperties": False,
        },
        defaults={"seconds": 1},
    ),
    TaskInfo(
        "primes",
        "Count primes.",
        {
            "type": "object",
            "properties": {"limit": {"type": "integer", "minimum": 2}},
            "required": ["limit"],
            "additionalProperties": False,
        },
        timeout=120.0,
        max_attempts=5,
    ),
]

_CONTRACT = Contract(build_spec())


class ValidatingClient(FlaskClient):
    """A test client whose every response is checked against /openapi.json."""

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:  # type: ignore[override]
        resp: TestResponse = super().open(*args, **kwargs)
        req = resp.request
        _CONTRACT.check(req.method, req.path, resp.status_code, resp.content_type or "", resp.get_data())
        return resp


@pytest.fixture(scope="session")
def contract() -> Contract:
    """The served OpenAPI document, checked to be the one built by the code."""
    return _CONTRACT


def make_app(settings: Settings, store: JobStore | None = None) -> Flask:
    """An app on ``settings`` (a store is built when not given) with the validating client."""
    app = create_app(
        {"JOBS_SETTINGS": settings, "JOBS_STORE": store or JobStore.from_settings(settings), "TESTING": True}
    )
    app.test_client_class = ValidatingClient
    return app


@pytest.fixture
def app(settings: Settings, store: JobStore) -> Flask:
    store.publish_tasks(TASKS)
    return make_app(settings, store)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def submit(client: FlaskClient) -> Any:
    """``submit(task="sleep", **body)`` -> the created job's JSON (asserting 202)."""

    def _submit(task: str = "sleep", headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        resp = client.post("/jobs", json={"task": task, **body}, headers=headers or {})
        assert resp.status_code == 202, resp.get_json()
        job: dict[str, Any] = resp.get_json()
        return job

    return _submit


class Runner:
    """Moves jobs through their life with the store calls a worker makes (claim, finish)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.worker = "test-worker"

    def claim(self, job_id: str) -> int:
        """Take ``job_id`` (running, attempt returned); jobs queued before it are handed back untouched."""
        others = []
        try:
            while True:
                claimed = self.store.claim(self.worker, 1)
                if not claimed:
                    job = self.store.get(job_id)
                    raise AssertionError(f"job {job_id} not claimable (status {job.status})")
                if claimed[0].id == job_id:
                    return claimed[0].attempt
                others.append(claimed[0])
        finally:
            for other in others:
                self.store.finish(self.worker, other.id, other.attempt, "handback")

    def succeed(
        self, job_id: str, result: Any = None, media_type: str = "application/json", raw: bytes | None = None
    ) -> Job:
        attempt = self.claim(job_id)
        data = raw if raw is not None else orjson.dumps(result)
        self.store.finish(self.worker, job_id, attempt, "succeeded", result=Result(data, media_type))
        return self.store.get(job_id)

    def fail(self, job_id: str, message: str = "boom") -> Job:
        attempt = self.claim(job_id)
        self.store.finish(
            self.worker, job_id, attempt, "failed", error=JobError("RuntimeError", message, "Traceback ...")
        )
        return self.store.get(job_id)


@pytest.fixture
def runner(store: JobStore) -> Runner:
    return Runner(store)


@pytest.fixture
def caplog_api(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.WARNING, logger="jobs_api")
    yield caplog
