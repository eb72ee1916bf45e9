"""Console queues page: every queue's counts; admins pause, resume and cap them (the store's queue controls,
the same ones ``POST /queues/<name>/pause`` and friends use)."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from jobs_core.config import Role, is_queue_name
from werkzeug.wrappers import Response as BaseResponse

from jobs_api.audit import current_actor
from jobs_api.auth import requires
from jobs_api.console import bp
from jobs_api.problems import Problem, validation_problem
from jobs_api.state import state

#: Highest cap the form accepts (as ``PUT /queues/<name>/cap``).
MAX_CAP = 100_000


@bp.get("/queues")
@requires(Role.VIEWER)
def queues() -> str:
    """Every known queue with its counts; pause/resume/cap controls for admins."""
    store = state().store
    return render_template("queues.html", queues=[store.queue_stats(n) for n in store.queue_names()])


@bp.post("/queues/<name>/<any(pause, resume, cap):action>")
@requires(Role.ADMIN)
def queue_action(name: str, action: str) -> BaseResponse:
    """Pause, resume or cap a known queue (admins); an unknown name is 404, never a new queue."""
    store = state().store
    if not is_queue_name(name) or name not in store.queue_names():
        raise Problem(404, "Not Found", f"no queue named {name!r}", slug="queue-not-found")
    if action == "pause":
        store.pause_queue(name, current_actor())
    elif action == "resume":
        store.resume_queue(name, current_actor())
    else:
        raw = request.form.get("cap", "").strip()
        if raw and not (raw.isascii() and raw.isdigit() and int(raw) <= MAX_CAP):
            raise validation_problem([{"path": "/form/cap", "message": f"an integer from 0 to {MAX_CAP}, or empty "
                                       "for no cap"}], status=400)
        store.set_queue_cap(name, int(raw) if raw else None, current_actor())
    return redirect(url_for("ui.queues"), 303)
