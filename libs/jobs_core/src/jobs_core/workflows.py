"""Workflows: jobs that wait for other jobs (a DAG), checked and ordered before one atomic submission.

A node is a job submission plus its dependencies; a dependency names another node of the same workflow
(by node name) or an existing job (by id), with a failure policy: ``fail`` (default: a dependency that
fails or is cancelled cancels this node, and so on transitively) or ``ignore`` (the node runs anyway).
This module has no Redis in it: storage is :mod:`jobs_core.flow_store`, the release on a dependency's
terminal transition is ``lua/includes/release.lua``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from jobs_core.errors import InvalidWorkflow

NODE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_NODES = 1000
MAX_DEPENDENCIES = 1000


class OnFailure(str, Enum):
    """What a failed or cancelled dependency does to its dependent."""

    FAIL = "fail"
    IGNORE = "ignore"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Dependency:
    """An edge: the dependency (node name or job id) and the policy when it fails."""

    ref: str
    on_failure: OnFailure = OnFailure.FAIL


@dataclass(frozen=True, slots=True)
class FlowNode:
    """One job of a workflow (or the single job of a submission with ``depends_on``)."""

    name: str
    task: str
    params: Mapping[str, Any] = field(default_factory=dict)
    depends_on: tuple[Dependency, ...] = ()
    max_attempts: int | None = None
    timeout: float | None = None
    priority: int | None = None
    #: Where a signed webhook is POSTed each time this node's job ends (checked by the caller).
    callback_url: str | None = None
    #: Seconds after submission before it may run (its ``run_at``): released earlier, it waits in the delayed set.
    delay: float = 0.0


def order(nodes: Sequence[FlowNode], is_job_id: Any) -> list[FlowNode]:
    """``nodes`` in dependency order; :class:`InvalidWorkflow` naming every duplicate name, unknown
    reference and the nodes of each cycle. A reference that is not a node name must be a job id
    (``is_job_id(ref)``); whether that job exists is checked by the submission script."""
    errors: list[tuple[str, str]] = []
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name in index:
            errors.append((f"/nodes/{i}/name", f"duplicate node name {node.name!r}"))
        index.setdefault(node.name, i)
    for i, node in enumerate(nodes):
        for j, dep in enumerate(node.depends_on):
            if dep.ref not in index and not is_job_id(dep.ref):
                errors.append((f"/nodes/{i}/depends_on/{j}", f"unknown reference {dep.ref!r} (not a node name "
                                                              "of this workflow nor a job id)"))
            if dep.ref == node.name:
                errors.append((f"/nodes/{i}/depends_on/{j}", f"node {node.name!r} depends on itself"))
    if errors:
        raise InvalidWorkflow(errors)
    # Kahn's algorithm over in-workflow edges; what is left over lies on (or behind) a cycle
    waiting = {n.name: {d.ref for d in n.depends_on if d.ref in index} for n in nodes}
    users: dict[str, list[str]] = {n.name: [] for n in nodes}
    for name, refs in waiting.items():
        for ref in refs:
            users[ref].append(name)
    ready = [n.name for n in nodes if not waiting[n.name]]
    out: list[FlowNode] = []
    while ready:
        name = ready.pop()
        out.append(nodes[index[name]])
        for user in users[name]:
            waiting[user].discard(name)
            if not waiting[user]:
                ready.append(user)
    if len(out) < len(nodes):
        stuck = sorted(name for name, deps in waiting.items() if deps)
        raise InvalidWorkflow([("/nodes", "dependency cycle among nodes " + ", ".join(repr(s) for s in stuck))])
    return out


def workflow_status(statuses: Sequence[str]) -> str:
    """A workflow's status from its nodes': running while any is live, else failed if any failed,
    cancelled if any was cancelled, succeeded when all did."""
    if any(s in ("queued", "running", "waiting") for s in statuses):
        return "running"
    for outcome in ("failed", "cancelled"):
        if outcome in statuses:
            return outcome
    return "succeeded"
