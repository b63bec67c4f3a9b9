"""`pgolf ablate FILE.toml`: validate every configuration, print the cost, run the matrix × seeds
(resumable), run the adaptive design if any, and write the report.

Layout of the ablation folder (default `ablations/<name>/`): `runs/<config>-s<seed>/` (ordinary run
directories), `configs/` (the resolved config of each run), `logs/` (each run's console output),
`timings.json` (measured seconds per run), `results.md`, `results.csv`, `plots/`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pgolf.errors import UserError
from pgolf.experiments.report import write_report
from pgolf.experiments.results import RunResult, load_run
from pgolf.experiments.runner import Launcher, PlannedRun
from pgolf.experiments.selection import FeatureSet, SelectionRound, forward_selection
from pgolf.experiments.spec import AblationSpec, Configuration, find_ablation_file, load_ablation


@dataclass
class Ablation:
    spec: AblationSpec
    folder: Path
    launcher: Launcher
    rows: list[Configuration] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def runs_dir(self) -> Path:
        return self.folder / "runs"

    def plan(self, rows: Sequence[Configuration]) -> list[PlannedRun]:
        return [PlannedRun(row.name, seed, self.spec.resolve(row, seed, self.runs_dir))
                for row in rows for seed in self.spec.seeds]

    def execute(self, rows: Sequence[Configuration]) -> None:
        for row in rows:
            if row.name not in {r.name for r in self.rows}:
                self.rows.append(row)
        self.failures += self.launcher.run_all(self.plan(rows))

    def results(self) -> dict[str, list[RunResult]]:
        found: dict[str, list[RunResult]] = {}
        for run in self.plan(self.rows):
            if (run.run_dir / "summary.json").is_file():
                found.setdefault(run.config, []).append(load_run(run.run_dir))
        return found

    def score(self, sets: list[FeatureSet]) -> dict[FeatureSet, float]:
        """Run the feature sets (all seeds) and return their mean metric (inf when every seed failed)."""
        rows = {s: self.spec.with_features(s) for s in sets}
        self.execute(list(rows.values()))
        results = self.results()
        scores = {}
        for features, row in rows.items():
            values = [r.metrics[self.spec.metric] for r in results.get(row.name, []) if self.spec.metric in r.metrics]
            scores[features] = statistics.fmean(values) if values else math.inf
        return scores

    def cost_text(self, rows: Sequence[Configuration]) -> str:
        planned = self.plan(rows)
        pending = [p for p in planned if p.state() != "done"]
        spec, jobs = self.spec, self.launcher.jobs
        lines = [f"ablation {spec.name}: design {spec.design}, {len(rows)} configurations × {len(spec.seeds)} seeds = "
                 f"{len(planned)} runs ({len(planned) - len(pending)} finished, {len(pending)} to run, "
                 f"{jobs} at a time)"]
        extra = spec.max_runs() - len(planned)
        if extra > 0:
            lines.append(f"forward selection may add up to {extra} more runs "
                         f"({len(spec.features)} features: at most n(n+1)/2 feature sets × seeds)")
        measured = list(self.launcher.timings.values())
        if measured:
            per_run = statistics.fmean(measured)
            lines.append(f"estimated cost: {per_run:.0f} s per run (mean of {len(measured)} measured) → "
                         f"{len(pending) * per_run / jobs / 60:.1f} min wall now"
                         + (f", ≤ {(len(pending) + max(extra, 0)) * per_run / jobs / 60:.1f} min in the worst case"
                            if extra > 0 else ""))
        else:
            caps = [p.cfg.train.max_wallclock_seconds for p in pending]
            if caps and all(c > 0 for c in caps):
                lines.append(f"estimated cost: training ≤ {sum(caps) / jobs / 60:.1f} min wall by the wallclock caps "
                             f"(≤ {max(caps):g} s per run), plus startup, packing and evaluation per run "
                             "(measured after the first run)")
            elif caps:
                lines.append("estimated cost: unknown before the first run (a configuration has no wallclock cap); "
                             "it is printed again from measured runs")
        return "\n".join(lines)


@dataclass(frozen=True)
class AblationOutcome:
    report: Path
    results: dict[str, list[RunResult]]
    rounds: list[SelectionRound]
    seconds: float


def run_ablation(file: str | Path, out: Path | None = None, jobs: int = 1, devices: Sequence[str] = (),
                 plan_only: bool = False, echo: Callable[[str], None] = print) -> AblationOutcome | None:
    """Run (or, with `plan_only`, only validate and cost) an ablation; return where the report is."""
    spec = load_ablation(find_ablation_file(file))
    folder = out if out is not None else Path("ablations") / spec.name
    ablation = Ablation(spec, folder, Launcher(folder, jobs=jobs, devices=devices, echo=echo))
    spec.validate(ablation.runs_dir)  # every configuration resolves before any run starts
    rows = spec.configurations()
    echo(ablation.cost_text(rows))
    if plan_only:
        return None
    start = time.perf_counter()
    ablation.execute(rows)
    rounds: list[SelectionRound] = []
    if spec.design == "forward":
        rounds = forward_selection(list(spec.features), ablation.score, spec.min_gain)
    results = ablation.results()
    seconds = sum(ablation.launcher.timings.get(run.run_id, 0.0) for run in ablation.plan(ablation.rows))
    report = write_report(spec, ablation.rows, results, folder, rounds, device_seconds=seconds or None)
    echo(f"report: {report} (+ results.csv, plots/)")
    if ablation.failures:
        raise UserError(f"{len(ablation.failures)} runs failed ({'; '.join(ablation.failures)}); the report covers the "
                        "others: fix the cause and run `pgolf ablate` again to retry only those")
    return AblationOutcome(report, results, rounds, time.perf_counter() - start)
