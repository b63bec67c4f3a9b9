"""`pgolf bench ablate-cpu`: every model technique alone, and all together, at equal wallclock or steps on CPU.

Each configuration is the base preset (`tiny`) plus one entry of the technique catalog
(`pgolf.model.techniques`), trained for the same number of seconds (or, with `steps`, the same number
of optimizer steps, which makes val_bpb independent of the machine's load) on the embedded corpus,
packed, and scored on a declared prefix of the val split; every configuration runs with the same seeds.
The table reports post-quantization val_bpb, training tokens/s, parameters and artifact bytes, each
against the baseline measured in the same process. At this scale it is evidence, not a verdict.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.model.techniques import TECHNIQUES, TECHNIQUES_BY_NAME, combined_overrides
from pgolf.pipeline import run_train
from pgolf.utils import atomic_write_json, atomic_write_text

BASELINE = "baseline"
ALL = "all"


def ablation_matrix(preset: str, only: Sequence[str] = ()) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, summary, overrides) for the baseline, each technique alone, and all of them together."""
    unknown = [name for name in only if name not in TECHNIQUES_BY_NAME]
    if unknown:
        raise UserError(f"unknown technique(s) {', '.join(unknown)}: choose from {', '.join(TECHNIQUES_BY_NAME)}")
    base = load_config(preset, env={}).model
    chosen = [t for t in TECHNIQUES if not only or t.name in only]
    rows = [(BASELINE, f"the `{preset}` preset as is", {})]
    rows += [(t.name, t.summary, t.overrides(base)) for t in chosen]
    rows.append((ALL, "every technique together (one of each alternative)", combined_overrides(base)))
    return rows


def budget_overrides(seconds: float, steps: int) -> dict[str, Any]:
    """Equal wallclock (`steps` = 0), or equal steps with no cap and a warm-down over the last third."""
    if steps <= 0:
        return {"train.max_wallclock_seconds": seconds}
    return {"train.max_wallclock_seconds": 0, "train.iterations": steps, "train.warmdown_iters": max(1, steps // 3)}


def _train_one(preset: str, overrides: dict[str, Any], seed: int, budget: dict[str, Any], val_tokens: int, threads: int,
               out_dir: Path, run_id: str) -> dict[str, Any]:
    fixed = {**budget, "train.threads": threads, "train.val_loss_every": 0, "train.train_log_every": 0,
             "train.checkpoint_every": 0, "train.device": "cpu", "eval.val_max_tokens": val_tokens,
             "run.seed": seed, "run.out_dir": out_dir, "run.run_id": run_id}
    cfg = load_config(preset, env={}, overrides=[f"{k}={v}" for k, v in {**overrides, **fixed}.items()])
    with contextlib.redirect_stdout(io.StringIO()):
        return run_train(cfg)


def _row(name: str, summary: str, overrides: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    bpb = [r["val_bpb"] for r in runs]
    return {
        "technique": name, "summary": summary, "overrides": dict(overrides),
        "val_bpb_mean": statistics.fmean(bpb), "val_bpb_std": statistics.stdev(bpb) if len(bpb) > 1 else 0.0,
        "pre_quant_val_bpb_mean": statistics.fmean(r["pre_quant_val_bpb"] for r in runs),
        "tokens_per_s_mean": statistics.fmean(r["train_tokens_per_s"] for r in runs),
        "steps_mean": statistics.fmean(r["steps"] for r in runs),
        "params": runs[0]["params"], "artifact_bytes_mean": statistics.fmean(r["artifact_bytes"] for r in runs),
        "per_seed": [{k: r[k] for k in ("seed", "val_bpb", "pre_quant_val_bpb", "train_tokens_per_s", "steps",
                                         "artifact_bytes")} for r in runs],
    }


def _with_baseline_ratios(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for row in rows:
        row["delta_bpb_vs_baseline"] = row["val_bpb_mean"] - base["val_bpb_mean"]
        row["tokens_per_s_vs_baseline"] = row["tokens_per_s_mean"] / base["tokens_per_s_mean"]


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"# ablate-cpu on `{result['preset']}` ({result['machine']}, {result['threads']} threads, "
        f"torch {result['torch']})",
        "",
        (f"{result['steps']} optimizer steps" if result.get("steps") else f"{result['seconds']:.0f} s of training")
        + f" per run ({result['jobs']} at a time), seeds {result['seeds']}, "
        f"val_bpb after the int8 roundtrip "
        f"on the first {result['val_tokens']:,} val tokens. Δ and × are against `baseline` in the same run.",
        "",
        "| technique | val_bpb (mean ± std) | Δ bpb | tokens/s | × tokens/s | steps | params | artifact bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['technique']} | {r['val_bpb_mean']:.4f} ± {r['val_bpb_std']:.4f} "
            f"| {r['delta_bpb_vs_baseline']:+.4f} | {r['tokens_per_s_mean']:,.0f} "
            f"| {r['tokens_per_s_vs_baseline']:.2f} | {r['steps_mean']:.0f} "
            f"| {r['params']:,} | {r['artifact_bytes_mean']:,.0f} |")
    return "\n".join(lines) + "\n"


def bench_ablate_cpu(preset: str = "tiny", seconds: float = 30.0, seeds: Sequence[int] = (1337, 1338),
                     val_tokens: int = 32768, threads: int = 0, jobs: int = 1, only: Sequence[str] = (),
                     out: Path | None = None, progress: Callable[[str], None] = print,
                     steps: int = 0) -> dict[str, Any]:
    """Run the matrix; with `out`, the JSON (and a .md table beside it) is rewritten after every row.

    `jobs` > 1 trains that many runs at once in separate processes (the seeds of one configuration
    side by side, so they share the machine's conditions); give each `threads` = cores / jobs.
    """
    matrix = ablation_matrix(preset, only)
    result: dict[str, Any] = {
        "benchmark": "ablate-cpu", "preset": preset, "machine": f"cpu-{os.cpu_count()}core",
        "threads": threads or torch.get_num_threads(), "jobs": jobs, "torch": torch.__version__,
        "seconds": None if steps else seconds, "steps": steps or None,
        "seeds": list(seeds), "val_tokens": val_tokens, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="pgolf-ablate-") as tmp, _executor(jobs) as pool:
        budget = budget_overrides(seconds, steps)
        pending = [[pool.submit(_train_one, preset, overrides, seed, budget, val_tokens, threads, Path(tmp),
                                f"{name}-{seed}") for seed in seeds] for name, _, overrides in matrix]
        for (name, summary, overrides), futures in zip(matrix, pending, strict=True):
            runs = [f.result() for f in futures]
            for run in runs:
                progress(f"{name} seed {run['seed']}: val_bpb {run['val_bpb']:.4f}, "
                         f"{run['train_tokens_per_s']:,.0f} tokens/s, {run['steps']} steps")
            result["rows"].append(_row(name, summary, overrides, runs))
            _with_baseline_ratios(result["rows"])
            if out is not None:
                atomic_write_json(out, result)
                atomic_write_text(out.with_suffix(".md"), markdown_table(result))
    result["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    if out is not None:
        atomic_write_json(out, result)
    return result


class _InProcess(Executor):
    """Runs each submitted call at once, in this process (jobs = 1)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _executor(jobs: int) -> Executor:
    if jobs <= 1:
        return _InProcess()
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
