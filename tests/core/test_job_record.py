"""A job record's fields as text -> :class:`Job` (``Job.from_fields``: every read of a record and every end a
waiter is delivered): each field's empty, missing and set forms, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jobs_core.model import DEFAULT_PRIORITY, Job, JobError, JobStatus

RECORD = {"id": "0b0c1e5e-8a2f-4f3c-9a57-2f5b8f0f6d4e", "task": "echo", "created_at": "1796027377973",
          "status": "queued"}


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def test_a_bare_record_takes_every_default() -> None:
    job = Job.from_fields(RECORD)
    assert job == Job(id=RECORD["id"], task="echo", params={}, status=JobStatus.QUEUED, attempts=0, max_attempts=1,
                      timeout=0.0, progress=None, message=None, created_at=ms(1796027377973), started_at=None,
                      finished_at=None, error=None, worker=None, owner="default", seq=0, run_at=None,
                      cancel_requested=False, result_type=None, queue="jobs", priority=DEFAULT_PRIORITY,
                      callback_url=None, webhook=None)
    assert job.created_at == datetime(2026, 11, 30, 8, 29, 37, 973000, tzinfo=UTC)


def test_empty_fields_read_as_missing_ones() -> None:
    empty = {f: "" for f in ("params", "attempts", "max_attempts", "timeout", "progress", "message", "started_at",
                             "finished_at", "error", "worker", "owner", "seq", "run_at", "cancel_requested",
                             "result_type", "queue", "priority", "callback", "webhook")}
    assert Job.from_fields({**RECORD, **empty}) == Job.from_fields(RECORD)


def test_every_field_set() -> None:
    job = Job.from_fields({
        **RECORD, "params": '{"a":[1,2]}', "status": "failed", "attempts": "2", "max_attempts": "3",
        "timeout": "12.5", "progress": "0", "message": "half", "started_at": "0", "finished_at": "1796027384431",
        "error": '{"type":"ValueError","message":"bad","traceback":"tb"}', "worker": "h:1:ab", "owner": "t1",
        "seq": "7", "run_at": "1796027384429", "cancel_requested": "1", "result_type": "text/plain",
        "queue": "q2", "priority": "9", "callback": "https://x.test/h", "webhook": '{"attempts":[],"delivered":true}',
    })
    assert (job.params, job.status, job.attempts, job.max_attempts, job.timeout) == \
        ({"a": [1, 2]}, JobStatus.FAILED, 2, 3, 12.5)
    assert (job.progress, job.message, job.worker, job.owner, job.seq) == (0.0, "half", "h:1:ab", "t1", 7)
    assert job.started_at == datetime(1970, 1, 1, tzinfo=UTC)  # "0" is a time, not a missing one
    assert (job.finished_at, job.run_at) == (ms(1796027384431), ms(1796027384429))
    assert job.error == JobError("ValueError", "bad", "tb")
    assert (job.cancel_requested, job.result_type, job.queue, job.priority) == (True, "text/plain", "q2", 9)
    assert (job.callback_url, job.webhook) == ("https://x.test/h", {"attempts": [], "delivered": True})
    assert job.is_terminal
    assert Job.from_fields({**RECORD, "error": "{}"}).error == JobError("", "", None)
    assert Job.from_fields({**RECORD, "cancel_requested": "0"}).cancel_requested is False


@pytest.mark.parametrize("status", list(JobStatus))
def test_every_status(status: JobStatus) -> None:
    assert Job.from_fields({**RECORD, "status": status.value}).status is status


@pytest.mark.parametrize(("fields", "error"), [
    ({"status": "bogus"}, ValueError),
    ({"created_at": ""}, AssertionError),
    ({"created_at": "soon"}, ValueError),
    ({"started_at": "soon"}, ValueError),
    ({"attempts": "x"}, ValueError),
])
def test_what_is_refused(fields: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        Job.from_fields({**RECORD, **fields})
    for name in ("id", "task", "status"):
        with pytest.raises(KeyError):
            Job.from_fields({k: v for k, v in RECORD.items() if k != name})
