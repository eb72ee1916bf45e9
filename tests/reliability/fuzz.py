"""Generated hostile input: schemathesis over every operation of the served /openapi.json, auth on.

Each operation gets positive (schema-valid) and negative (schema-violating) cases; every response is
checked for server errors, conformance to the documented response schema, content type and status
code. Failures are collected (not raised) so one run reports all of them with a reproduction.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from support.http_response import server_errors
from support.streams import short_stream

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]
#: what gunicorn's own HTTP parser answers, before any route, to a request line or headers over its limits
#: (a long generated query string): problem+json as the README (Guarantees) promises for every route,
#: not an answer of the operation, so /openapi.json does not list it per operation
PARSER_LIMITS = {414, 431}


def parser_limit_problem(resp: requests.Response) -> str | None:
    """For an answer of gunicorn's parser (a status of :data:`PARSER_LIMITS` without the ``X-Request-Id``
    the app puts on every answer): what is wrong with it ("" when nothing); None for any other answer,
    which the schema checks judge."""
    if resp.status_code not in PARSER_LIMITS or "X-Request-Id" in resp.headers:
        return None
    kind = resp.headers.get("Content-Type", "")
    return "" if kind.startswith("application/problem+json") else f"{resp.status_code} with {kind or 'no type'}"


@dataclass
class FuzzReport:
    cases: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return server_errors(self.statuses)


def run(base_url: str, api_key: str, total_cases: int) -> FuzzReport:
    """About ``total_cases`` generated requests spread over every operation and both generation modes."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    out = FuzzReport()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {api_key}"}
    # Operations without inputs (/healthz) yield one case; the others share the budget. Rounds repeat
    # (hypothesis draws new cases each time) until the budget is reached.
    for _ in range(6):
        missing = total_cases - out.cases
        if missing <= 0:
            break
        per = max(5, math.ceil(missing / (len(operations) * len(modes)) * 1.3))
        _round(operations, modes, per, base_url, session, headers, out)
    return out


def _round(operations: list[Any], modes: tuple[GenerationMode, ...], per: int, base_url: str,
           session: requests.Session, headers: dict[str, str], out: FuzzReport) -> None:
    for op in operations:
        for mode in modes:
            label = f"{op.label} [{mode.value}]"
            try:
                strategy = op.as_strategy(generation_mode=mode)
            except Exception as e:  # an operation with nothing to violate in negative mode
                out.failures.append(f"{label}: no strategy ({type(e).__name__})")
                continue

            one = _test(strategy, per, label, base_url, session, headers, out)
            try:
                one()
            except hypothesis.errors.Unsatisfiable:
                pass  # negative mode of an operation without inputs: nothing can violate its schema


def _test(strategy: Any, per: int, label: str, base_url: str, session: requests.Session, headers: dict[str, str],
          out: FuzzReport) -> Any:
    """A hypothesis test drawing ``per`` cases of one operation and mode, recording into ``out``."""

    @hypothesis.given(case=strategy)
    @hypothesis.settings(max_examples=per, deadline=None, database=None, phases=[Phase.generate],
                         suppress_health_check=list(HealthCheck), derandomize=False)
    def one(case: schemathesis.Case) -> None:
        short_stream(case)
        resp = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
        out.cases += 1
        out.by_operation[label] += 1
        out.statuses[resp.status_code] += 1
        parser = parser_limit_problem(resp)
        if parser is not None:
            if parser and len(out.failures) < 50:
                out.failures.append(f"{label} -> {parser}: not problem+json\n  reproduce: "
                                    f"{case.as_curl_command(headers)}")
            return
        try:
            case.validate_response(resp, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as e:  # failed checks: keep them, with a reproduction
            if len(out.failures) < 50:
                out.failures.append(f"{label} -> {resp.status_code}: "
                                    f"{str(e).strip()[:600]}\n  reproduce: {case.as_curl_command(headers)}")


    return one
