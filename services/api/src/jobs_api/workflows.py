"""``/workflows`` resource (a DAG of jobs submitted atomically, its status, cancel) and ``depends_on`` of
``POST /jobs``. Dependents are released inside the Redis scripts that end their dependencies."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from jobs_core.config import Role
from jobs_core.errors import InvalidWorkflow, WorkflowNotFound
from jobs_core.flow_store import Workflow
from jobs_core.model import Job, TaskInfo
from jobs_core.workflows import Dependency, FlowNode, OnFailure

from jobs_api import openapi_flows
from jobs_api.auth import current_tenant, protect, requires
from jobs_api.problems import Problem, validation_problem
from jobs_api.state import json_response, state
from jobs_api.validation import idempotency_key, read_json_body, schema_errors
from jobs_api.webhooks import safe_url

bp = Blueprint("workflows", __name__)
protect(bp)


def not_found(workflow_id: str) -> Problem:
    """404 for a workflow that does not exist, is malformed or is another tenant's."""
    return Problem(404, "Not Found", f"no workflow with id {workflow_id!r}", slug="workflow-not-found")


def _dependencies(raw: list[Any], node_names: bool) -> tuple[Dependency, ...]:
    deps = []
    for item in raw:
        if isinstance(item, str):
            deps.append(Dependency(item))
        else:
            ref = item.get("node") if node_names and "node" in item else item["job"]
            deps.append(Dependency(str(ref), OnFailure(item.get("on_failure", OnFailure.FAIL.value))))
    return tuple(deps)


def _task(name: str, params: dict[str, Any], base: str) -> TaskInfo:
    info = state().store.task_info(name)
    if info is None:
        raise validation_problem([{"path": f"{base}/task", "message": f"unknown task {name!r}"}])
    errors = schema_errors(info.params_schema, {**info.defaults, **params}, f"{base}/params")
    if errors:
        raise validation_problem(errors)
    return info


def _submit(nodes: list[FlowNode], workflow: bool, owner: str,
            idempotency_key: str | None = None) -> tuple[str | None, list[Job], bool]:
    """Create the nodes with the pending caps of ``POST /jobs`` (every node counts: 429 when they do not
    fit) and, with an Idempotency-Key, the same jobs again for a repeat of the same request."""
    st = state()
    try:
        return st.store.submit_nodes(owner, nodes, workflow=workflow, idempotency_key=idempotency_key,
                                     max_pending=st.settings.max_pending,
                                     max_pending_per_tenant=st.settings.max_pending_per_tenant)
    except InvalidWorkflow as e:
        raise validation_problem([{"path": p, "message": m} for p, m in e.errors]) from e


def submit_dependent(body: dict[str, Any], owner: str, callback_url: str | None = None,
                     idempotency_key: str | None = None) -> tuple[Job, bool]:
    """``POST /jobs`` with ``depends_on`` (already validated against SubmitRequest and the task's schema,
    ``callback_url`` already judged safe); ``(job, created)``. A ``delay`` counts from now: released
    earlier, the job waits for its ``run_at``."""
    node = FlowNode("job", body["task"], body.get("params", {}), _dependencies(body["depends_on"], False),
                    body.get("max_attempts"), body.get("timeout"), body.get("priority"), callback_url,
                    delay=float(body.get("delay", 0.0)))
    try:
        _, (job,), created = _submit([node], False, owner, idempotency_key)
    except Problem as e:  # node paths of a one-node submission are the body's own
        for err in e.errors or []:
            err["path"] = err["path"].replace("/nodes/0", "", 1)  # type: ignore[index]
        e.detail = "; ".join(f"{x['path']}: {x['message']}" for x in e.errors or [])
        raise
    return job, created


def workflow_body(wf: Workflow) -> dict[str, Any]:
    """The public representation: every node's job id, status and dependencies."""
    nodes = []
    for n in wf.nodes:
        job = wf.jobs.get(n["id"])
        nodes.append({"name": n["name"], "job_id": n["id"], "status": job.status.value if job else "expired",
                      "depends_on": n["depends_on"], "links": {"job": f"/jobs/{n['id']}"}})
    from jobs_core.schedules import iso

    return {"id": wf.id, "status": wf.status, "created_at": iso(wf.created_at), "nodes": nodes,
            "links": {"self": f"/workflows/{wf.id}"}}


@bp.post("/workflows")
@requires(Role.OPERATOR)
def submit_workflow() -> Response:
    """Submit a whole DAG atomically (201); cycles, unknown references, bad tasks or params are 422."""
    body = read_json_body()
    errors = schema_errors(openapi_flows.SCHEMAS["WorkflowRequest"], body)
    if errors:
        raise validation_problem(errors)
    nodes = []
    for i, raw in enumerate(body["nodes"]):
        _task(raw["task"], raw.get("params", {}), f"/nodes/{i}")
        callback = raw.get("callback_url")
        nodes.append(FlowNode(raw["name"], raw["task"], raw.get("params", {}),
                              _dependencies(raw.get("depends_on", []), True), raw.get("max_attempts"),
                              raw.get("timeout"), raw.get("priority"),
                              None if callback is None else safe_url(callback, f"/nodes/{i}/callback_url")))
    owner = current_tenant()
    workflow_id, _, created = _submit(nodes, True, owner, idempotency_key())
    assert workflow_id is not None
    wf = state().store.get_workflow(workflow_id, owner)
    headers = {"Location": f"/workflows/{workflow_id}", **({} if created else {"Idempotent-Replayed": "true"})}
    return json_response(workflow_body(wf), 201, headers)


@bp.get("/workflows/<workflow_id>")
@requires(Role.VIEWER)
def get_workflow(workflow_id: str) -> Response:
    """Every node's status and the workflow's."""
    try:
        return json_response(workflow_body(state().store.get_workflow(workflow_id, current_tenant())))
    except WorkflowNotFound as e:
        raise not_found(workflow_id) from e


@bp.delete("/workflows/<workflow_id>")
@requires(Role.OPERATOR)
def cancel_workflow(workflow_id: str) -> Response:
    """Cancel every unfinished node (waiting and queued at once, running ones requested)."""
    try:
        return json_response(workflow_body(state().store.cancel_workflow(workflow_id, current_tenant())))
    except WorkflowNotFound as e:
        raise not_found(workflow_id) from e
