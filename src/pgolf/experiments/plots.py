"""Ablation plots with matplotlib (Agg backend, no display needed), each beside the CSV it was drawn from:
loss curves of all runs, metric bars with seed error bars, bpb against artifact bytes."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pgolf.experiments.results import RunResult, aggregate
from pgolf.utils import atomic_write_bytes, atomic_write_text

Results = Mapping[str, Sequence[RunResult]]  # configuration name → its runs


def _save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _colours(names: Sequence[str]) -> dict[str, str]:
    return {name: f"C{i % 10}" for i, name in enumerate(names)}


def loss_curves(results: Results, folder: Path) -> Path:
    rows = [(config, run.run_id, run.seed, step, loss) for config, runs in results.items() for run in runs
            for step, loss in run.loss_curve()]
    _write_csv(folder / "loss_curves.csv", ("config", "run_id", "seed", "step", "train_loss"), rows)
    figure = Figure(figsize=(8, 5))
    axes = figure.add_subplot()
    colours = _colours(list(results))
    for config, runs in results.items():
        for i, run in enumerate(runs):
            curve = run.loss_curve()
            axes.plot([s for s, _ in curve], [v for _, v in curve], color=colours[config], alpha=0.8, linewidth=1,
                      label=config if i == 0 else None)
    axes.set(xlabel="step", ylabel="train loss (nats/token)", title="Training loss, all runs")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    path = folder / "loss_curves.png"
    _save(figure, path)
    return path


def metric_bars(results: Results, metric: str, folder: Path) -> Path:
    stats = {config: aggregate([r.metrics[metric] for r in runs if metric in r.metrics])
             for config, runs in results.items()}
    _write_csv(folder / f"{metric}_bars.csv", ("config", "mean", "std", "n"),
               [(c, a.mean, a.std, a.n) for c, a in stats.items()])
    figure = Figure(figsize=(max(6, 0.9 * len(stats) + 2), 4.5))
    axes = figure.add_subplot()
    names = list(stats)
    errors = [0.0 if a.n < 2 else a.std for a in stats.values()]
    axes.bar(names, [a.mean for a in stats.values()], yerr=errors, capsize=4,
             color=[_colours(names)[n] for n in names])
    finite = [a.mean for a in stats.values()]
    if finite:
        span = max(finite) - min(finite)
        pad = max(span, max(errors, default=0.0), abs(max(finite)) * 1e-3)
        axes.set_ylim(min(finite) - 2 * pad, max(finite) + 2 * pad)
    axes.set(ylabel=f"{metric} (mean ± seed std)", title=f"{metric} per configuration")
    axes.tick_params(axis="x", labelrotation=30)
    axes.grid(axis="y", alpha=0.3)
    path = folder / f"{metric}_bars.png"
    _save(figure, path)
    return path


def bpb_vs_bytes(results: Results, folder: Path) -> Path:
    rows = [(config, run.run_id, run.seed, run.metrics["artifact_bytes"], run.metrics["val_bpb"])
            for config, runs in results.items() for run in runs]
    _write_csv(folder / "bpb_vs_bytes.csv", ("config", "run_id", "seed", "artifact_bytes", "val_bpb"), rows)
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot()
    colours = _colours(list(results))
    for config in results:
        points = [(b, v) for c, _, _, b, v in rows if c == config]
        axes.scatter([b for b, _ in points], [v for _, v in points], color=colours[config], label=config)
    axes.set(xlabel="artifact bytes (code + model)", ylabel="val_bpb", title="val_bpb against artifact size")
    axes.legend(fontsize="small")
    axes.grid(alpha=0.3)
    path = folder / "bpb_vs_bytes.png"
    _save(figure, path)
    return path


def write_plots(results: Results, metric: str, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [loss_curves(results, folder), metric_bars(results, metric, folder), bpb_vs_bytes(results, folder)]
