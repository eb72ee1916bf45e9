"""Reliability scenarios: fixtures and the report table printed at the end of the session.

``RELIABILITY_PROFILE=short`` (default, part of ``make test``) runs every scenario small and quick;
``RELIABILITY_PROFILE=full`` (``make reliability``) runs them at the sizes the guarantees are stated for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability import report


@pytest.fixture(scope="session", autouse=True)
def _fresh_results() -> None:
    """Start the session's table empty (conftest hooks here load too late for pytest_sessionstart)."""
    report.reset()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = report.load()
    if rows:
        text = report.table(rows)
        terminalreporter.write_sep("=", "reliability")
        terminalreporter.write_line(text)
        report.LAST_TABLE.write_text(text + "\n")
    report.RESULTS.unlink(missing_ok=True)


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "stack"
