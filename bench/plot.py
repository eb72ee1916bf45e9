"""The scale-out plot (run with .venv-bench, where matplotlib lives): drain rate and Redis CPU per job
against worker processes, one line per job length.

``python -m bench.plot RESULTS.json OUT.png``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib import ticker


def plot(results: dict, out: Path) -> None:
    """Two panels sharing the x axis (worker processes, log scale)."""
    points = results["curve"]
    fig, (rate_ax, cpu_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for job_ms in sorted({p["job_ms"] for p in points}):
        series = sorted((p for p in points if p["job_ms"] == job_ms), key=lambda p: p["procs"])
        procs = [p["procs"] for p in series]
        label = f"{job_ms:g} ms jobs"
        rate_ax.plot(procs, [p["drain_rate"] for p in series], marker="o", label=label)
        cpu_ax.plot(procs, [p["redis_cpu_us"] for p in series], marker="o", label=label)
    for ax, title, ylabel in ((rate_ax, "Drain rate", "jobs/s"),
                              (cpu_ax, "Redis CPU per job (worker side)", "µs per job")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({p["procs"] for p in points}))
        ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
        ax.set_xlabel(f"worker processes (x {points[0]['slots']} slots), one Redis")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend()
    m = results["machine"]
    fig.suptitle(f"Scale-out on {m['cpu'].split(',')[0]} (shared, load {m['load']}); {m['date']}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    plot(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
