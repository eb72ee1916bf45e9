"""Jobs with dependencies in Redis: submit one job with ``depends_on`` or a whole workflow atomically, read
and cancel workflows, and let a task read its dependencies' results.

Mixed into :class:`jobs_core.store.JobStore`. The release of dependents happens inside the scripts that
make a job terminal (``lua/includes/release.lua``); the DAG checks are in :mod:`jobs_core.workflows`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis
from redis.commands.core import Script

from jobs_core import scripts, tracing
from jobs_core.config import Settings
from jobs_core.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidWorkflow,
    JobNotFound,
    QueueFull,
    WorkflowNotFound,
)
from jobs_core.keys import Keys
from jobs_core.model import DEFAULT_PRIORITY, Job, TaskInfo, is_job_id, new_job_id
from jobs_core.serialization import dumps, loads
from jobs_core.workflows import FlowNode, order, workflow_status


@dataclass(frozen=True, slots=True)
class Workflow:
    """A stored workflow: its nodes (name, job id, dependencies) and their jobs as they are now."""

    id: str
    owner: str
    created_at: int
    nodes: list[dict[str, Any]]
    jobs: dict[str, Job]  # by job id (a job whose record expired is missing)

    @property
    def status(self) -> str:
        """running | succeeded | failed | cancelled (see :func:`jobs_core.workflows.workflow_status`)."""
        return workflow_status([self.jobs[n["id"]].status.value for n in self.nodes if n["id"] in self.jobs])


class FlowStore:
    """Dependency operations; mixed into :class:`jobs_core.store.JobStore`, which sets these up."""

    redis: redis.Redis
    settings: Settings
    keys: Keys

    def task_info(self, name: str, max_age: float = 2.0) -> TaskInfo | None:  # provided by JobStore
        raise NotImplementedError

    def get(self, job_id: str, owner: str | None = None) -> Job:  # provided by JobStore
        raise NotImplementedError

    def get_many(self, job_ids: Sequence[str]) -> list[Job]:  # provided by JobStore
        raise NotImplementedError

    def cancel(self, job_id: str, owner: str | None = None) -> Job:  # provided by JobStore
        raise NotImplementedError

    def _flow_scripts(self, acked: Callable[[str], Script]) -> None:
        self._submit_flow = acked(scripts.SUBMIT_FLOW)

    def _release_to(self, info: TaskInfo | None, priority: int) -> tuple[str, bytes]:
        """The queue of a task's jobs and the keys a dependent of it is queued into once released."""
        queue = info.queue if info is not None and info.queue else self.settings.queue
        q = self.keys.for_queue(queue)
        return queue, dumps({"waiting": q.waiting(priority), "paused": q.paused(priority), "control": q.control,
                             "wake": q.wake, "delayed": q.delayed})

    def submit_flow(self, owner: str, nodes: Sequence[FlowNode], *, workflow: bool) -> tuple[str | None, list[Job]]:
        """Create ``nodes`` (dependency-ordered here; cycles and unknown references refused with
        :class:`InvalidWorkflow`) in one atomic step; returns the workflow id (when ``workflow``) and the
        jobs in the order given. A dependency on another tenant's or an unknown job is refused too."""
        workflow_id, jobs, _ = self.submit_nodes(owner, nodes, workflow=workflow)
        return workflow_id, jobs

    def submit_nodes(
        self,
        owner: str,
        nodes: Sequence[FlowNode],
        *,
        workflow: bool,
        idempotency_key: str | None = None,
        max_pending: int | None = None,
        max_pending_per_tenant: int | None = None,
    ) -> tuple[str | None, list[Job], bool]:
        """:meth:`submit_flow` with backpressure and idempotency: returns ``(workflow id, jobs, created)``.

        Every node counts against the caps (``max_pending`` per queue, ``max_pending_per_tenant`` for
        ``owner``), waiting ones too: :class:`QueueFull` and nothing is created when they do not fit. With
        ``idempotency_key`` a repeat of the same request returns the first one's jobs (``created`` False); a
        different request under the same key raises :class:`IdempotencyConflict`. A ``POST /jobs`` with
        ``depends_on`` (``workflow`` False) shares the key space of ``POST /jobs``; workflows have their own.
        """
        ordered = order(nodes, is_job_id)
        ids = {n.name: new_job_id() for n in nodes}
        workflow_id = str(uuid.uuid4()) if workflow else ""
        s = self.settings
        described = []
        args: list[Any] = []
        first_queue = ""
        node_queues: list[str] = []
        for node in ordered:
            info = self.task_info(node.task)
            params = {**(info.defaults if info else {}), **node.params}
            attempts = node.max_attempts or (info.max_attempts if info else None) or s.default_max_attempts
            timeout = node.timeout or (info.timeout if info else None) or s.default_timeout_seconds
            deps = list(dict.fromkeys((ids.get(d.ref, d.ref), d.on_failure.value) for d in node.depends_on))
            priority = DEFAULT_PRIORITY if node.priority is None else node.priority
            queue, release = self._release_to(info, priority)
            node_queues.append(queue)
            first_queue = first_queue or queue
            args += [ids[node.name], node.task, dumps(params), attempts, float(timeout), queue, priority, release,
                     node.callback_url or "", int(node.delay * 1000), len(deps)]
            for dep_id, policy in deps:
                args += [dep_id, policy]
        for node in nodes:
            edges = [{"ref": d.ref, "job": ids.get(d.ref, d.ref), "on_failure": d.on_failure.value}
                     for d in node.depends_on]
            described.append({"name": node.name, "id": ids[node.name], "depends_on": edges})
        k = self.keys
        queue_keys = [k.for_queue(q) for q in dict.fromkeys(node_queues)]
        idem_key, digest = k.idempotency(owner, "-"), ""
        if idempotency_key is not None:
            digest = _digest(ordered, workflow)
            scope = ("workflow:" if workflow else "") + hashlib.sha256(idempotency_key.encode()).hexdigest()
            idem_key = k.idempotency(owner, scope)
        head: list[Any] = ["1" if idempotency_key is not None else "0", digest, s.idempotency_ttl_seconds,
                           max_pending or 0, max_pending_per_tenant or 0, len(queue_keys),
                           *(a for q in queue_keys for a in q.block_args)]
        with tracing.enqueue_span(ordered[0].task, first_queue, len(ordered)) as span:
            if span is not None:  # tracing on: every node carries the submission's context (last ARGV)
                span.set_attribute("jobs.job_ids", [ids[n.name] for n in ordered])
                if workflow_id:
                    span.set_attribute("jobs.workflow_id", workflow_id)
                args.append(tracing.traceparent())
            reply = self._submit_flow(
                keys=[k.index, k.owner_index(owner), k.seq, k.pending, k.workflow(workflow_id or "-"), k.queues,
                      idem_key, *(key for q in queue_keys for key in q.block)],
                args=[k.job_prefix, owner, workflow_id, dumps(described), s.record_ttl_seconds, len(ordered), *head,
                      *args],
            )
        kind = _text(reply[0])
        if kind == "full":
            scope = _text(reply[1])
            raise QueueFull(scope, (max_pending if scope == "global" else max_pending_per_tenant) or 0)
        if kind == "conflict":
            raise IdempotencyConflict(idempotency_key or "", _text(reply[1]))
        if kind == "exists":  # the same request again: the first one's jobs, in the order of its nodes
            first = {n.name: _text(job_id) for n, job_id in zip(ordered, reply[1:], strict=True)}
            by_id = {j.id: j for j in self.get_many(list(first.values()))}
            raw_wf = self.redis.hget(k.job(first[ordered[0].name]), "workflow")
            jobs = [by_id[first[n.name]] for n in nodes if first[n.name] in by_id]
            return (_text(raw_wf) if raw_wf else None), jobs, False
        if kind == "unknown":
            ref = _text(reply[1])
            where = [f"/nodes/{i}/depends_on/{j}" for i, n in enumerate(nodes) for j, d in enumerate(n.depends_on)
                     if d.ref == ref]
            raise InvalidWorkflow([(p, f"unknown job {ref!r} (no such job of this tenant)") for p in where])
        made = {j.id: j for j in self.get_many(list(ids.values()))}
        return workflow_id or None, [made[ids[n.name]] for n in nodes], True

    def get_workflow(self, workflow_id: str, owner: str | None = None) -> Workflow:
        """A workflow and its nodes' jobs; :class:`WorkflowNotFound` if absent or another tenant's."""
        try:
            uuid.UUID(workflow_id)
        except ValueError as e:
            raise WorkflowNotFound(workflow_id) from e
        raw = cast(dict[bytes, bytes], self.redis.hgetall(self.keys.workflow(workflow_id)))
        if not raw or (owner is not None and raw[b"owner"].decode() != owner):
            raise WorkflowNotFound(workflow_id)
        nodes: list[dict[str, Any]] = loads(raw[b"nodes"])
        jobs = {j.id: j for j in self.get_many([n["id"] for n in nodes])}
        return Workflow(workflow_id, raw[b"owner"].decode(), int(raw[b"created_at"]), nodes, jobs)

    def cancel_workflow(self, workflow_id: str, owner: str | None = None) -> Workflow:
        """Cancel every node not yet finished (waiting and queued ones at once, running ones requested)."""
        wf = self.get_workflow(workflow_id, owner)
        for node in wf.nodes:
            job = wf.jobs.get(node["id"])
            if job is not None and not job.is_terminal:
                try:
                    self.cancel(job.id, wf.owner)
                except (IllegalTransition, JobNotFound):
                    pass  # it ended (or was cancelled by a cascade) meanwhile
        return self.get_workflow(workflow_id, owner)

    def dependency_results(self, job_id: str) -> dict[str, Any]:
        """The results of a job's dependencies that succeeded, by job id (JSON decoded; raw bytes otherwise)."""
        raw = self.redis.hget(self.keys.job(job_id), "deps")
        deps: list[str] = loads(raw) if raw else []
        if not deps:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for dep in deps:
            pipe.hmget(self.keys.job(dep), "status", "result_type")
            pipe.get(self.keys.result(dep))
        replies = pipe.execute()
        out: dict[str, Any] = {}
        for dep, (meta, data) in zip(deps, zip(replies[::2], replies[1::2], strict=True), strict=True):
            if meta[0] == b"succeeded" and data is not None:
                json_type = meta[1] in (None, b"application/json")
                out[dep] = loads(data) if json_type else data
        return out


def _digest(ordered: Sequence[FlowNode], workflow: bool) -> str:
    """A stable digest of a flow submission, to tell an idempotent repeat from a different request."""
    return hashlib.sha256(dumps({"workflow": workflow, "nodes": [
        {"name": n.name, "task": n.task, "params": n.params, "max_attempts": n.max_attempts, "timeout": n.timeout,
         "priority": n.priority, "delay": n.delay, "callback_url": n.callback_url,
         "depends_on": [[d.ref, d.on_failure.value] for d in n.depends_on]}
        for n in ordered]})).hexdigest()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
