"""Generated hostile input: schemathesis over every operation of the served /openapi.json, auth on.

Each operation gets positive (schema-valid) and negative (schema-violating) cases; every response is
checked for server errors, conformance to the documented response schema, content type and status
code. Failures are collected (not raised) so one run reports all of them with a reproduction.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

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

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, status_code_conformance]


@dataclass
class FuzzReport:
    cases: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500 and s != 503)


def run(base_url: str, api_key: str, total_cases: int) -> FuzzReport:
    """About ``total_cases`` generated requests spread over every operation and both generation modes."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    per = max(1, math.ceil(total_cases / (len(operations) * len(modes))))
    out = FuzzReport()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {api_key}"}
    for op in operations:
        for mode in modes:
            try:
                strategy = op.as_strategy(generation_mode=mode)
            except Exception as e:  # an operation with nothing to violate in negative mode
                out.failures.append(f"{op.label} {mode.value}: no strategy ({type(e).__name__})")
                continue

            @hypothesis.given(case=strategy)
            @hypothesis.settings(max_examples=per, deadline=None, database=None, phases=[Phase.generate],
                                 suppress_health_check=list(HealthCheck), derandomize=False)
            def one(case: schemathesis.Case) -> None:
                if op.path.startswith("/jobs") and case.query and "wait" in case.query:
                    case.query["wait"] = 0  # long-polls of unknown ids end at once anyway; keep the run short
                resp = case.call(base_url=base_url, session=session, headers=headers, timeout=30)
                out.cases += 1
                out.by_operation[op.label] += 1
                out.statuses[resp.status_code] += 1
                try:
                    case.validate_response(resp, checks=CHECKS, headers=headers)
                except (Exception, BaseExceptionGroup) as e:  # failed checks: keep them, with a reproduction
                    if len(out.failures) < 50:
                        out.failures.append(f"{op.label} [{mode.value}] -> {resp.status_code}: "
                                            f"{str(e).strip()[:600]}\n  reproduce: {case.as_curl_command(headers)}")

            try:
                one()
            except hypothesis.errors.Unsatisfiable:
                pass  # negative mode of an operation without inputs: nothing can violate its schema
    return out
