"""Scenario figures: each test records one row; the session prints them as one table at the end.

Rows are appended (JSON lines) to ``$RELIABILITY_RESULTS`` (default ``.run/reliability/results-<pid>.jsonl``,
truncated at session start); the printed table is also kept in ``.run/reliability/last-<profile>.txt``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# one file per pytest process: concurrent sessions (make test next to make reliability) do not mix rows
RESULTS = Path(os.environ.get("RELIABILITY_RESULTS", ROOT / ".run" / "reliability" / f"results-{os.getpid()}.jsonl"))
LAST_TABLE = ROOT / ".run" / "reliability" / f"last-{os.environ.get('RELIABILITY_PROFILE', 'short') or 'short'}.txt"
PROFILE = os.environ.get("RELIABILITY_PROFILE", "short").strip().lower() or "short"
FULL = PROFILE == "full"

COLUMNS = ("scenario", "accepted", "succeeded", "lost", "stuck", "dup execs", "max recovery", "errors seen")


@dataclass
class Row:
    """One scenario's line in the table, plus free-form figures printed under it."""

    scenario: str
    accepted: int = 0
    succeeded: int | None = 0
    lost: int | None = 0
    stuck: int | None = 0
    duplicates: int | None = None
    max_recovery: float | None = None
    errors: str = "none"
    figures: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[str]:
        return [
            self.scenario, str(self.accepted), _opt(self.succeeded), _opt(self.lost), _opt(self.stuck),
            "-" if self.duplicates is None else str(self.duplicates),
            "-" if self.max_recovery is None else f"{self.max_recovery:.2f}s",
            self.errors,
        ]


def reset() -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("")


def record(row: Row) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(asdict(row)) + "\n")


def load() -> list[Row]:
    if not RESULTS.exists():
        return []
    return [Row(**json.loads(line)) for line in RESULTS.read_text().splitlines() if line.strip()]


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table, then each scenario's extra figures."""
    cells = [list(COLUMNS), *[r.cells() for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = [f"Reliability report (profile: {PROFILE})", line]
    for n, row in enumerate(cells):
        out.append("|".join(f" {c:<{widths[i]}} " if i in (0, 7) else f" {c:>{widths[i]}} " for i, c in enumerate(row)))
        if n == 0:
            out.append(line)
    out.append(line)
    for r in rows:
        if r.figures:
            out.append(f"{r.scenario}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in r.figures.items()))
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _opt(v: int | None) -> str:
    return "-" if v is None else str(v)
