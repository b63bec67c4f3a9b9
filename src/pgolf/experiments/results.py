"""Finished runs as data: the summary metrics and the loss curve of `runs/<id>/`.

Everything here reads what `pgolf train` wrote (summary.json, metrics.jsonl); nothing re-computes
training results.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgolf.errors import UserError

SUMMARY_NAME = "summary.json"
# Shown first, in this order; every other numeric summary value follows alphabetically.
KEY_METRICS = ("val_bpb", "val_loss", "pre_quant_val_bpb", "quant_gap_bpb", "artifact_bytes", "model_bytes",
               "code_bytes", "params", "steps", "step_ms", "train_tokens_per_s", "wallclock_s", "last_train_loss")
_NOT_METRICS = {"seed"}


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    summary: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.summary.get("run_id", self.run_dir.name))

    @property
    def seed(self) -> int:
        return int(self.summary["seed"])

    @property
    def metrics(self) -> dict[str, float]:
        return numeric_metrics(self.summary)

    def loss_curve(self) -> list[tuple[int, float]]:
        """(step, train_loss) from metrics.jsonl; a step logged twice (resume after a crash) keeps its last value."""
        path = self.run_dir / "metrics.jsonl"
        points: dict[int, float] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                if "train_loss" in record:
                    points[int(record["step"])] = float(record["train_loss"])
        return sorted(points.items())


def numeric_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Every top-level number of a summary (booleans and the seed excluded), plus ms per step."""
    values = {k: float(v) for k, v in summary.items()
              if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_METRICS}
    if summary.get("steps"):
        values["step_ms"] = 1000.0 * float(summary["wallclock_s"]) / float(summary["steps"])
    return values


def metric_names(results: Iterable[RunResult]) -> list[str]:
    names = set().union(*(r.metrics for r in results))
    return [m for m in KEY_METRICS if m in names] + sorted(names - set(KEY_METRICS))


def load_run(path: str | Path) -> RunResult:
    """A finished run from its directory or its summary.json."""
    target = Path(path)
    summary_path = target if target.name == SUMMARY_NAME else target / SUMMARY_NAME
    if not summary_path.is_file():
        raise UserError(f"{target} has no {SUMMARY_NAME}: "
                        "pass a finished run directory (runs/<id>) or its summary.json")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{summary_path} is not valid JSON ({exc}): the run did not finish writing it") from None
    return RunResult(summary_path.parent, summary)


@dataclass(frozen=True)
class Aggregate:
    mean: float
    std: float  # sample standard deviation (n − 1); nan for a single value
    n: int

    def text(self, digits: int = 4) -> str:
        if self.n < 2 or math.isnan(self.std):
            return format_number(self.mean, digits)
        return f"{format_number(self.mean, digits)} ± {format_number(self.std, digits)}"


def format_number(value: float, digits: int = 4) -> str:
    """Large values (bytes, params, tokens/s) as grouped integers, others with `digits` decimals."""
    if math.isnan(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def aggregate(values: Sequence[float]) -> Aggregate:
    if not values:
        return Aggregate(math.nan, math.nan, 0)
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return Aggregate(statistics.fmean(values), std, len(values))
