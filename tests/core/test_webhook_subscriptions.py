"""Tenant webhook subscriptions and callbacks on workflow nodes, on the real Redis with a real loopback
receiver: the terminal scripts write one outbox event per (job, transition, destination) in the same step
as the transition — for a job's callback and for its tenant's subscription when the filters take it, also
for dependents cancelled by a cascade, nodes cancelled at submission and scheduled jobs — a subscription
change applies to transitions after it, and an Idempotency-Key repeat with another callback_url is a
conflict."""

from __future__ import annotations

import time

import pytest
from core.test_webhooks import WORKER as W
from core.test_webhooks import drain, hook_settings, hstore, receiver  # noqa: F401 - shared fixtures
from core.test_webhooks import run_to as run
from jobs_core.errors import IdempotencyConflict
from jobs_core.model import JobError, Result, Submission
from jobs_core.schedules import CatchUp, ScheduleSpec
from jobs_core.store import JobStore
from jobs_core.subscriptions import WebhookSubscriptions
from jobs_core.ticker import tick_once
from jobs_core.webhooks import Dispatcher, WebhookSecrets
from jobs_core.workflows import Dependency, FlowNode, OnFailure
from standardwebhooks.webhooks import Webhook
from support.webhook_receiver import Receiver

T = "acme"


def outbox(store: JobStore) -> list[dict[str, str]]:
    """The outbox's events (oldest first), fields decoded."""
    return [{k.decode(): v.decode() for k, v in fields.items()}
            for _, fields in store.redis.xrange(store.keys.webhook_outbox)]


def events(store: JobStore) -> list[tuple[str, str, str]]:
    """(event id, status, url) of every outbox event."""
    return [(e["event"], e["status"], e["url"]) for e in outbox(store)]


def test_a_job_with_a_callback_and_a_subscription_gets_both_signed(hstore: JobStore, receiver: Receiver) -> None:  # noqa: F811
    secret = WebhookSecrets(hstore).rotate(T)
    sub_url = receiver.url.replace("/hook", "/tenant")
    subs = WebhookSubscriptions(hstore)
    sub, created = subs.put(T, sub_url)
    assert created and sub.statuses is None and sub.tasks is None
    both, _ = hstore.enqueue("echo", {}, owner=T, callback_url=receiver.url)
    only_sub, _ = hstore.enqueue("echo", {}, owner=T)
    other_tenant, _ = hstore.enqueue("echo", {}, owner="someone-else")
    assert outbox(hstore) == []  # nothing before a terminal transition
    run(hstore, both.id)
    run(hstore, only_sub.id, "failed")
    run(hstore, other_tenant.id)  # no subscription, no callback: nothing
    assert events(hstore) == [(f"{both.id}:1", "succeeded", receiver.url),
                              (f"{both.id}:1:subscription", "succeeded", sub_url),
                              (f"{only_sub.id}:1:subscription", "failed", sub_url)]
    assert [e["dest"] for e in outbox(hstore)] == ["callback", "subscription", "subscription"]
    d = Dispatcher(hstore, "d1")
    d._ensure_group()
    drain(d, lambda: len(receiver.received) >= 3, what="three deliveries")
    by_id = {}
    for headers, body in receiver.received:
        by_id[headers["webhook-id"]] = Webhook(secret).verify(body, headers)  # every one signed
    assert by_id[f"{only_sub.id}:1:subscription"]["type"] == "job.failed"
    assert by_id[f"{both.id}:1"]["data"]["id"] == by_id[f"{both.id}:1:subscription"]["data"]["id"] == both.id
    hook = hstore.get(both.id).to_dict()["webhook"]
    assert hook["callback_url"] == receiver.url and hook["delivered"] is True
    assert hook["delivered_to"] == ["callback", "subscription"]
    assert sorted(a["destination"] for a in hook["attempts"]) == ["callback", "subscription"]
    # a job without a callback shows its subscription's attempts
    hook = hstore.get(only_sub.id).to_dict()["webhook"]
    assert hook["callback_url"] is None and hook["delivered_to"] == ["subscription"]
    assert "webhook" not in hstore.get(other_tenant.id).to_dict()


def test_filters_and_changes_apply_to_later_transitions_only(hstore: JobStore) -> None:  # noqa: F811
    subs = WebhookSubscriptions(hstore)
    subs.put(T, "https://hooks.example.com/a", statuses=["failed", "cancelled"], tasks=["echo"])
    ok, _ = hstore.enqueue("echo", {}, owner=T)
    bad, _ = hstore.enqueue("echo", {}, owner=T, max_attempts=1)
    other_task, _ = hstore.enqueue("sleep", {}, owner=T, max_attempts=1)
    gone, _ = hstore.enqueue("echo", {}, owner=T)
    run(hstore, ok.id)  # succeeded: not in the filter
    run(hstore, bad.id, "failed")
    run(hstore, other_task.id, "failed")  # another task: not in the filter
    hstore.cancel(gone.id)
    assert events(hstore) == [(f"{bad.id}:1:subscription", "failed", "https://hooks.example.com/a"),
                              (f"{gone.id}:1:subscription", "cancelled", "https://hooks.example.com/a")]
    # replaced: the events already written keep their address; the next transitions use the new one
    before = subs.get(T)
    assert before is not None
    sub, created = subs.put(T, "https://hooks.example.com/b")
    assert not created and sub.created_at == before.created_at and sub.updated_at >= before.updated_at
    hstore.retry(bad.id)
    run(hstore, bad.id)
    assert events(hstore)[-1] == (f"{bad.id}:2:subscription", "succeeded", "https://hooks.example.com/b")
    assert subs.delete(T) and not subs.delete(T) and subs.get(T) is None
    hstore.retry(gone.id)
    run(hstore, gone.id)
    assert len(events(hstore)) == 3  # deleted: nothing more


def test_duplicate_and_stale_finishes_emit_nothing_for_the_subscription(hstore: JobStore) -> None:  # noqa: F811
    WebhookSubscriptions(hstore).put(T, "https://hooks.example.com/a")
    job, _ = hstore.enqueue("echo", {}, owner=T)
    attempt = run(hstore, job.id)
    assert hstore.finish(W, job.id, attempt, "succeeded", result=Result(b"1", "application/json")) is None
    assert hstore.finish(W, job.id, attempt + 1, "failed", error=JobError("E", "x", None)) is None
    assert [e[0] for e in events(hstore)] == [f"{job.id}:1:subscription"]


def test_workflow_nodes_and_cascade_cancelled_dependents_get_their_webhooks(hstore: JobStore) -> None:  # noqa: F811
    WebhookSubscriptions(hstore).put(T, "https://hooks.example.com/all", statuses=["cancelled"])
    cb = "https://hooks.example.com/node"
    nodes = [FlowNode("a", "echo", callback_url=cb), FlowNode("b", "echo", depends_on=(Dependency("a"),),
                                                              callback_url=cb),
             FlowNode("c", "echo", depends_on=(Dependency("b"),), callback_url=cb),
             FlowNode("d", "echo", depends_on=(Dependency("b", OnFailure.IGNORE),)),
             FlowNode("plain", "echo", depends_on=(Dependency("a"),))]
    _, jobs = hstore.submit_flow(T, nodes, workflow=True)
    a, b, c, d, plain = (j.id for j in jobs)
    assert hstore.get(b).callback_url == cb and hstore.get(plain).callback_url is None
    run(hstore, a, "failed")  # one script: a fails, b, c and plain are cancelled by the cascade, d released
    assert sorted(events(hstore)) == sorted([
        (f"{a}:1", "failed", cb),  # the subscription takes only 'cancelled'
        (f"{b}:1", "cancelled", cb),
        (f"{b}:1:subscription", "cancelled", "https://hooks.example.com/all"),
        (f"{c}:1", "cancelled", cb),
        (f"{c}:1:subscription", "cancelled", "https://hooks.example.com/all"),
        (f"{plain}:1:subscription", "cancelled", "https://hooks.example.com/all"),
    ])
    assert hstore.get(d).status.value == "queued"  # 'ignore' edge on the cancelled b: released, no event
    # a node whose dependency already failed is cancelled at submission: that transition emits too
    _, (late,) = hstore.submit_flow(T, [FlowNode("late", "echo", depends_on=(Dependency(a),), callback_url=cb)],
                                    workflow=False)
    assert late.status.value == "cancelled"
    assert (f"{late.id}:1", "cancelled", cb) in events(hstore)
    assert (f"{late.id}:1:subscription", "cancelled", "https://hooks.example.com/all") in events(hstore)


def test_idempotency_key_repeat_with_another_callback_url_is_a_conflict(hstore: JobStore) -> None:  # noqa: F811
    job, created = hstore.enqueue("echo", {}, owner=T, idempotency_key="k1", callback_url="https://a.example/")
    again, replayed = hstore.enqueue("echo", {}, owner=T, idempotency_key="k1", callback_url="https://a.example/")
    assert created and not replayed and again.id == job.id
    with pytest.raises(IdempotencyConflict):
        hstore.enqueue("echo", {}, owner=T, idempotency_key="k1", callback_url="https://b.example/")
    with pytest.raises(IdempotencyConflict):
        hstore.enqueue("echo", {}, owner=T, idempotency_key="k1")
    items = [Submission("echo", {"i": 1}), Submission("echo", {"i": 2})]
    hstore.enqueue_many(items, owner=T, idempotency_key="k2", callback_url="https://a.example/")
    assert not hstore.enqueue_many(items, owner=T, idempotency_key="k2", callback_url="https://a.example/")[1]
    with pytest.raises(IdempotencyConflict):
        hstore.enqueue_many(items, owner=T, idempotency_key="k2")
    # without a callback the digest is what it was before callback_url existed
    plain, _ = hstore.enqueue("echo", {}, owner=T, idempotency_key="k3")
    assert hstore.enqueue("echo", {}, owner=T, idempotency_key="k3")[0].id == plain.id


def test_scheduled_jobs_are_the_tenants_too(hstore: JobStore) -> None:  # noqa: F811
    WebhookSubscriptions(hstore).put(T, "https://hooks.example.com/all", tasks=["echo"])
    hstore.put_schedule(T, "every-second", ScheduleSpec(task="echo", cron="* * * * * *", catchup=CatchUp.ONE))
    deadline = time.monotonic() + 10
    fired: list[str] = []
    while not fired and time.monotonic() < deadline:
        fired = tick_once(hstore, grace_ms=1000)
        time.sleep(0.05)
    assert fired, "no tick fired"
    run(hstore, fired[0])
    assert events(hstore) == [(f"{fired[0]}:1:subscription", "succeeded", "https://hooks.example.com/all")]
