"""A worker's FINISH_CLAIM keys and arguments are built once and reused (issue 16, round trip): a store whose
offered tasks, queues or worker id change between calls must still claim by the current ones."""

from __future__ import annotations

from jobs_core.config import Settings
from jobs_core.model import JobStatus
from jobs_core.store import Finish, JobStore


def test_claims_follow_the_offered_tasks_set_after_the_first_call(store: JobStore, settings: Settings) -> None:
    job, _ = store.enqueue("echo", {"n": 1})
    worker = JobStore.from_settings(settings)
    worker.offers = ("other",)
    assert worker.claim("w:1:a", 1) == []  # parked: this worker lacks the task
    worker.offers = ("echo", "other")
    claimed = worker.claim("w:1:a", 1)
    assert [c.id for c in claimed] == [job.id]


def test_claims_follow_the_queues_and_worker_id_of_each_call(store: JobStore, settings: Settings) -> None:
    other = f"{settings.queue}b"
    first, _ = store.enqueue("echo", {"n": 1})
    second, _ = store.enqueue("echo", {"n": 2}, queue=other)
    worker = JobStore.from_settings(settings)
    assert [c.id for c in worker.claim("w:1:a", 2)] == [first.id]
    worker.queues = (other,)
    claimed = worker.claim("w:2:b", 2)
    assert [c.id for c in claimed] == [second.id]
    # the lease is the second worker's: its finish is taken, the first worker's is stale
    assert worker.finish_and_claim("w:1:a", [Finish(second.id, 1, "succeeded")], 0)[0] == [None]
    assert worker.finish_and_claim("w:2:b", [Finish(second.id, 1, "succeeded")], 0)[0] == ["succeeded"]
    assert store.get(second.id).status is JobStatus.SUCCEEDED
    assert store.get(first.id).status is JobStatus.RUNNING
