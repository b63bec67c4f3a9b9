"""results.md + results.csv of an ablation: per run and per configuration mean ± std of every summary
metric, deltas against the baseline row, feature contributions, step-time deltas, and the plots."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pgolf.experiments.plots import write_plots
from pgolf.experiments.results import Aggregate, RunResult, aggregate, format_number as _fmt, metric_names
from pgolf.experiments.selection import SelectionRound
from pgolf.experiments.spec import AblationSpec, Configuration
from pgolf.experiments.stats import one_sided_p
from pgolf.utils import atomic_write_text

Results = Mapping[str, Sequence[RunResult]]


def _mean(runs: Sequence[RunResult], metric: str) -> Aggregate:
    return aggregate([r.metrics[metric] for r in runs if metric in r.metrics])


@dataclass(frozen=True)
class Contribution:
    """Effect of one feature: mean(with) − mean(without), for the metric, step time and artifact size."""

    feature: str
    with_row: str
    without_row: str
    delta: float
    delta_step_ms: float
    delta_step_pct: float
    delta_artifact_bytes: float


def _contribution(feature: str, with_row: str, without_row: str, results: Results, metric: str) -> Contribution:
    def delta(name: str) -> float:
        return _mean(results[with_row], name).mean - _mean(results[without_row], name).mean
    base_ms = _mean(results[without_row], "step_ms").mean
    return Contribution(feature, with_row, without_row, delta(metric), delta("step_ms"),
                        100.0 * delta("step_ms") / base_ms if base_ms else math.nan, delta("artifact_bytes"))


def _plain_row(rows: Sequence[Configuration], features: set[str]) -> Configuration | None:
    """The row that is exactly `features` on top of the common settings (no own overrides or preset)."""
    return next((r for r in rows if set(r.features) == features and not r.overrides and r.preset is None), None)


def contributions(spec: AblationSpec, rows: Sequence[Configuration],
                  results: Results) -> tuple[str, list[Contribution]]:
    """('isolated' | 'leave-one-out', contributions) from whichever design the rows support."""
    have = [r for r in rows if results.get(r.name)]
    found: list[Contribution] = []
    if spec.design == "leave_one_out":
        full = _plain_row(have, set(spec.features))
        for feature in spec.features:
            without = _plain_row(have, set(spec.features) - {feature})
            if full is not None and without is not None:
                found.append(_contribution(feature, full.name, without.name, results, spec.metric))
        return "leave-one-out", found
    base = _plain_row(have, set())
    for feature in spec.features:
        alone = _plain_row(have, {feature})
        if base is not None and alone is not None:
            found.append(_contribution(feature, alone.name, base.name, results, spec.metric))
    return "isolated", found


def _signed(value: float, digits: int = 4) -> str:
    return "–" if math.isnan(value) else f"{value:+,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows)]


def _config_table(spec: AblationSpec, rows: Sequence[Configuration], results: Results) -> list[str]:
    metric = spec.metric
    base_runs = results.get(spec.baseline, [])
    base = _mean(base_runs, metric)
    base_ms = _mean(base_runs, "step_ms")
    lines = []
    for row in rows:
        runs = results.get(row.name, [])
        if not runs:
            lines.append([row.name, row.description, "0", *["–"] * 9])
            continue
        value, ms = _mean(runs, metric), _mean(runs, "step_ms")
        if row.name == spec.baseline or not base_runs:
            delta, p = "baseline" if row.name == spec.baseline else "–", "–"
        else:
            test = one_sided_p([r.metrics[metric] for r in runs], [r.metrics[metric] for r in base_runs], 0.0)
            delta, p = _signed(value.mean - base.mean), "–" if test.p is None else f"{test.p:.3g}"
        lines.append([row.name, row.description, str(value.n), value.text(), delta, p,
                      _mean(runs, "pre_quant_val_bpb").text(), _mean(runs, "quant_gap_bpb").text(),
                      _fmt(_mean(runs, "artifact_bytes").mean), _fmt(ms.mean, 1),
                      _signed(ms.mean - base_ms.mean, 1) if base_runs else "–", _fmt(_mean(runs, "steps").mean, 0)])
    header = ["config", "what", "n", f"{metric} (mean ± std)", f"Δ vs {spec.baseline}", "p (better, Welch)",
              "pre-quant bpb", "quant gap", "artifact bytes", "ms/step", "Δ ms/step", "steps"]
    return _table(header, lines)


def _contribution_table(kind: str, found: Sequence[Contribution], metric: str) -> list[str]:
    if not found:
        return []
    how = ("each feature alone minus the baseline" if kind == "isolated"
           else "all features minus all but this one")
    lines = [f"## {kind.capitalize()} contribution of each feature", "",
             f"Δ = mean({how}); a negative Δ {metric} means the feature helps.", ""]
    rows = [[c.feature, f"{c.with_row} vs {c.without_row}", _signed(c.delta), _signed(c.delta_step_ms, 1),
             _signed(c.delta_step_pct, 1) + " %", _signed(c.delta_artifact_bytes, 0)] for c in found]
    header = ["feature", "rows", f"Δ {metric}", "Δ ms/step", "Δ step time", "Δ artifact bytes"]
    return lines + _table(header, rows) + [""]


def _selection_table(rounds: Sequence[SelectionRound], metric: str) -> list[str]:
    lines = ["## Greedy forward selection", ""]
    rows = []
    for i, r in enumerate(rounds):
        tried = ", ".join(f"{f} {v:.4f}" for f, v in r.candidates.items()) or "–"
        step = "start" if i == 0 else (f"add {r.added}" if r.added else "stop: no candidate improves")
        rows.append([str(i), step, "+".join(r.chosen) or "(none)", f"{r.score:.4f}", tried])
    return lines + _table(["round", "decision", "chosen", metric, "candidates tried"], rows) + [""]


def _run_table(rows: Sequence[Configuration], results: Results, metric: str) -> list[str]:
    lines = []
    for row in rows:
        for run in results.get(row.name, []):
            m = run.metrics
            lines.append([run.run_id, row.name, str(run.seed), _fmt(m.get(metric, math.nan)),
                          _fmt(m.get("val_loss", math.nan)), _fmt(m.get("artifact_bytes", math.nan)),
                          _fmt(m.get("steps", math.nan), 0), _fmt(m.get("step_ms", math.nan), 1),
                          _fmt(m.get("wallclock_s", math.nan), 1)])
    return _table(["run", "config", "seed", metric, "val_loss", "artifact bytes", "steps", "ms/step", "train s"], lines)


def _all_metrics_table(rows: Sequence[Configuration], results: Results, names: Sequence[str]) -> list[str]:
    present = [r for r in rows if results.get(r.name)]
    lines = [[name, *(_mean(results[r.name], name).text() for r in present)] for name in names]
    return _table(["metric", *(r.name for r in present)], lines)


def _csv(rows: Sequence[Configuration], results: Results, names: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["kind", "config", "seed", "run_id", *names])
    for row in rows:
        runs = results.get(row.name, [])
        for run in runs:
            writer.writerow(["run", row.name, run.seed, run.run_id, *(run.metrics.get(n, "") for n in names)])
        if runs:
            stats = [_mean(runs, n) for n in names]
            writer.writerow(["mean", row.name, "", "", *(s.mean for s in stats)])
            writer.writerow(["std", row.name, "", "", *("" if math.isnan(s.std) else s.std for s in stats)])
    return buffer.getvalue()


def write_report(spec: AblationSpec, rows: Sequence[Configuration], results: Results, folder: Path,
                 rounds: Sequence[SelectionRound] = (), device_seconds: float | None = None) -> Path:
    """Write results.md, results.csv and plots/ into `folder`; return the path of results.md."""
    runs = [run for name in results for run in results[name]]
    names = metric_names(runs)
    present = {r.name: results[r.name] for r in rows if results.get(r.name)}
    plots = write_plots(present, spec.metric, folder / "plots") if runs else []
    kind, found = contributions(spec, rows, results)
    lines = [f"# Ablation: {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [f"Design **{spec.design}**, seeds {', '.join(map(str, spec.seeds))}, metric **{spec.metric}** "
              f"(lower is better), baseline **{spec.baseline}**; file `{spec.path}`. "
              f"{len(runs)} finished runs"
              + (f", {device_seconds:,.0f} s of device time measured." if device_seconds else "."),
              "", "## Configurations", ""]
    lines += _config_table(spec, rows, results) + [""]
    lines += _contribution_table(kind, found, spec.metric)
    if rounds:
        lines += _selection_table(rounds, spec.metric)
    lines += ["## Runs", ""] + _run_table(rows, results, spec.metric) + [""]
    lines += ["## Every summary metric (mean ± std over seeds)", ""] + _all_metrics_table(rows, results, names) + [""]
    if plots:
        lines += ["## Plots", "", *(f"![{p.stem}](plots/{p.name}) (data: `plots/{p.stem}.csv`)" for p in plots), ""]
    atomic_write_text(folder / "results.csv", _csv(rows, results, names))
    path = folder / "results.md"
    atomic_write_text(path, "\n".join(lines))
    return path
