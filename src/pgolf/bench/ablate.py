"""`pgolf bench ablate`: an ablation file end to end, timed, with the table it produced."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from pgolf.experiments.ablate import run_ablation
from pgolf.experiments.report import contributions
from pgolf.experiments.results import aggregate
from pgolf.experiments.spec import find_ablation_file, load_ablation
from pgolf.utils import atomic_write_json


def machine_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0).replace(" ", "-").lower()
    return f"cpu-{os.cpu_count()}core"


def _configurations_table(report: Path) -> str:
    """The '## Configurations' section of results.md, as committed evidence of what the run produced."""
    text = report.read_text(encoding="utf-8")
    start = text.index("## Configurations")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None].strip()


def bench_ablate(file: str, folder: Path, out: Path | None = None, jobs: int = 1) -> dict[str, Any]:
    spec = load_ablation(find_ablation_file(file))
    load_before = os.getloadavg()
    start = time.perf_counter()
    outcome = run_ablation(file, out=folder, jobs=jobs)
    wall = time.perf_counter() - start
    assert outcome is not None
    metric = spec.metric
    means = (metric, "step_ms", "artifact_bytes")
    configs = {name: {f"{m}_mean": aggregate([r.metrics[m] for r in runs]).mean for m in means}
               | {f"{metric}_std": aggregate([r.metrics[metric] for r in runs]).std, "n": len(runs)}
               for name, runs in outcome.results.items()}
    kind, found = contributions(spec, spec.configurations(), outcome.results)
    result = {
        "benchmark": "ablate", "ablation": spec.name, "file": str(find_ablation_file(file)), "machine": machine_name(),
        "platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(), "jobs": jobs,
        "wallclock_s": wall, "runs": sum(len(r) for r in outcome.results.values()),
        "seconds_per_run": wall / max(sum(len(r) for r in outcome.results.values()), 1),
        "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0],
        "configs": configs,
        "contributions": {c.feature: {"kind": kind, f"delta_{metric}": c.delta, "delta_step_ms": c.delta_step_ms,
                                      "delta_artifact_bytes": c.delta_artifact_bytes} for c in found},
        "table": _configurations_table(outcome.report),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if out is not None:
        atomic_write_json(out, result)
    return result
