"""OpenAPI parts of ``Prefer: wait`` on ``POST /jobs`` (jobs_api.prefer), merged into the submit operation by
:func:`jobs_api.openapi.build_spec`."""

from __future__ import annotations

import copy
from typing import Any

from jobs_api.openapi_parts import IDEMPOTENT_REPLAYED, json_body

#: ``Preference-Applied: wait`` (RFC 7240 section 3): the request was held as asked.
PREFERENCE_APPLIED = {
    "Preference-Applied": {
        "schema": {"type": "string", "enum": ["wait"]},
        "description": "Present when the request was held as Prefer: wait asked (the job ended, or the wait passed).",
    }
}

PREFER = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "examples": ["wait=10"]},
    "description": "RFC 7240. 'wait=N' (N whole seconds): hold the request until the job ends — 200 with the "
    "finished job and, when it succeeded with a JSON result, the result inline as 'result' (any other result "
    "stays at links.result) — or N seconds pass (the usual 202 with the job as it then is). N is cut to "
    "JOBS_PREFER_WAIT_MAX_SECONDS (default 60). A held submission takes one of the process's long-poll slots "
    "(shared with GET /jobs/{id}?wait and GET /events); with none free it is answered at once, as without the "
    "header. Preferences this server cannot honour (no wait, a value that is not digits, wait=0, "
    "respond-async) are ignored, as RFC 7240 requires: never an error.",
}


def finished_job_schema(job: dict[str, Any]) -> dict[str, Any]:
    """The ``Job`` schema with the optional inline ``result`` of a held submission."""
    schema = copy.deepcopy(job)
    schema["properties"]["result"] = {
        "description": "The job's result (JSON results only), present when the job succeeded; the same bytes "
        "as GET /jobs/{id}/result."
    }
    return schema


def apply(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Document ``Prefer`` on ``POST /jobs``: its parameter, the 200 of a held submission that ended, and
    ``Preference-Applied`` on a 202 that was held until the wait passed."""
    post = paths["/jobs"]["post"]
    post["parameters"] = [*post.get("parameters", []), PREFER]
    accepted = post["responses"]["202"]
    accepted["headers"] = {**accepted.get("headers", {}), **PREFERENCE_APPLIED}
    post["responses"]["200"] = json_body(
        "FinishedJob",
        "Prefer: wait, and the job ended within the wait: the finished job (succeeded, failed or cancelled), "
        "with its JSON result inline when it succeeded.",
        {**accepted["headers"], **IDEMPOTENT_REPLAYED},
    )
    schemas["FinishedJob"] = finished_job_schema(schemas["Job"])
