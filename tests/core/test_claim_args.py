"""A worker's FINISH_CLAIM keys and arguments are built, and mostly packed, once and reused (issue 16, round
trip): a store whose offered tasks, queues or worker id change between calls must still claim by the current
ones, and the call sent must be the very bytes redis-py would have sent."""

from __future__ import annotations

import pytest
from jobs_core.config import Settings
from jobs_core.model import JobError, JobStatus, Result
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


@pytest.mark.parametrize("offers", [None, ("echo", "other")])
@pytest.mark.parametrize("queues", [1, 2])
def test_packed_call_is_byte_for_byte_what_redis_py_sends(settings: Settings, offers: tuple[str, ...] | None,
                                                          queues: int) -> None:
    worker = JobStore.from_settings(settings)
    worker.offers = offers
    worker.queues = (settings.queue, f"{settings.queue}b")[:queues]
    finishes = [
        Finish("a" * 36, 1, "succeeded", Result(b'{"\xc3\xa9":[1,2]}\r\n$3', "application/json")),
        Finish("b" * 36, 2, "failed", error=JobError("ValueError", "bad ü", "Traceback...")),
        Finish("c" * 36, 3, "retry", error=JobError("Timeout", "slow"), retry_delay=0.25),
        Finish("d" * 36, 1, "handback"),
    ]
    conn = worker.redis.connection_pool.get_connection()
    try:
        for batch, claim in (([], 4), (finishes[:1], 0), (finishes, 3)):
            keys, args = worker._finish_claim_args("host:1:ab", batch, claim)
            for last in (f"{args[-1]}:1", f"{args[-1]}:2"):
                packed = worker._finish_claim_packed(keys, args, last)
                assert packed is not None
                expected = b"".join(conn.pack_command("EVALSHA", worker._finish_claim.sha, len(keys), *keys,
                                                      *args[:-1], last))
                assert packed.data == expected
                assert packed.argc == 3 + len(keys) + len(args)
    finally:
        worker.redis.connection_pool.release(conn)
    assert worker._finish_claim_packed(list(keys), args, "x") is None  # not the cached keys: packed as usual
