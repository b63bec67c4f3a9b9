"""`pgolf submit RUN…`: the records folder the challenge asks for (TECHNIQUES §5.5).

README.md (results table, architecture, techniques with sources, how to reproduce), submission.json,
one `train_seed<N>.log` per run, requirements.txt and the single-file `train_gpt.py` whose bytes
are the code bytes of the budget. Refused, naming the run, when a run is unfinished, its log is
missing, runs disagree on config or code, or any run's total is over 16,000,000 bytes. The folder
is built beside its destination and renamed into place, so it never exists half-written.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pgolf.artifact.budget import BUDGET_BYTES
from pgolf.config import Config, load_config
from pgolf.errors import UserError
from pgolf.experiments.results import RunResult, aggregate, load_run
from pgolf.export import ExportInfo, write_export
from pgolf.pipeline import load_run_config
from pgolf.utils import atomic_write_json, atomic_write_text

# Config keys a record README explains: (technique, where it comes from: TECHNIQUES.md section and records).
TECHNIQUE_SOURCES: dict[str, tuple[str, str]] = {
    "model.vocab_size": ("vocabulary size", "§4.22; records/2026-04-01_Vocab4096_MLPMult4_WD085, 2026-04-05 (sp8192)"),
    "model.num_layers": ("depth", "§3.2; records/2026-03-19_10L_MixedPrecision (10–11 layers)"),
    "model.model_dim": ("width", "§3.2"),
    "model.num_heads": ("attention heads", "§3.2"),
    "model.num_kv_heads": ("grouped-query attention (KV heads)", "§3.2"),
    "model.mlp_mult": ("MLP width", "§4.14; records/2026-03-23 (3×), records/2026-04-01_Vocab4096_MLPMult4_WD085 (4×)"),
    "model.activation": ("MLP activation", "§4.14; openai/parameter-golf#493 (LeakyReLU(0.5)²)"),
    "model.qk_gain_init": ("learnable QK gain, initial value",
                           "§4.17.2; openai/parameter-golf#1125, #1217, records/2026-04-09"),
    "model.rope_base": ("RoPE base", "§4.17.3"),
    "model.logit_softcap": ("logit softcap", "§3.2"),
    "model.tied_embed_init_std": ("tied embedding init std", "§3.3"),
    "train.train_seq_len": ("training sequence length", "§4.2; records/2026-03-18_LongContextSeq2048"),
    "train.train_batch_tokens": ("tokens per step", "§4.2; records/2026-03-18_LongContextSeq2048"),
    "train.warmdown_iters": ("LR warm-down length", "§4.13; records/2026-04-01_Vocab4096_MLPMult4_WD085"),
    "train.iterations": ("iteration budget", "§3.6"),
    "train.max_wallclock_seconds": ("wallclock cap", "§5.2"),
    "train.warmup_steps": ("compile-priming steps, rolled back", "§3.7"),
    "train.grad_accum_steps": ("gradient accumulation", "§3.7"),
    "eval.val_max_tokens": ("scored prefix of the val split: not a full-val score", "§1.6, §5.3"),
    "optim.matrix_lr": ("Muon learning rate", "§4.13"),
    "optim.scalar_lr": ("scalar learning rate", "§4.13"),
    "optim.tied_embed_lr": ("tied embedding learning rate", "§4.13"),
    "optim.muon_momentum": ("Muon momentum", "§4.12.5; records/2026-04-09_A2_Muon097_3Seed"),
    "optim.muon_momentum_warmup_steps": ("Muon momentum warm-up", "§4.12.5"),
    "optim.grad_clip_norm": ("gradient clipping", "§4.13; records/2026-04-23"),
    "quant.scheme": ("quantization scheme", "§4.3"),
    "quant.codec": ("compression codec", "§4.9"),
}
# Settings that change how a run is executed or logged, not what it computes.
_OPERATIONAL = {"train.device", "train.compile", "train.threads", "train.val_loss_every", "train.train_log_every",
                "train.checkpoint_every", "eval.val_batch_size"}
RECORD_TRACK = "10min_16mb"
_RUNTIME_PACKAGES = ("torch", "numpy", "sentencepiece", "zstandard", "brotli", "tomli-w")


@dataclass(frozen=True)
class SubmissionRun:
    result: RunResult
    cfg: Config

    @property
    def seed(self) -> int:
        return self.result.seed


def _load_runs(paths: list[Path]) -> list[SubmissionRun]:
    runs = []
    for path in paths:
        result = load_run(path)
        if not (result.run_dir / "train.log").is_file():
            raise UserError(f"run {result.run_dir} has no train.log: the records folder needs every run's log; "
                            "submit runs whose folders are complete")
        runs.append(SubmissionRun(result, load_run_config(result.run_dir)))
    seeds = [r.seed for r in runs]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"two runs share a seed ({seeds}): a record reports one run per seed")
    return sorted(runs, key=lambda r: r.seed)


def _check_track(runs: list[SubmissionRun], track: str) -> None:
    for run in runs:
        legality = run.result.summary.get("legality", {"compliant": True})
        if not legality["compliant"]:
            raise UserError(f"run {run.result.run_dir} is scored by a {legality['label']} stage "
                            f"({run.result.summary['eval_stage']}: {legality['reason']}): no track accepts it; "
                            "re-run with a compliant eval (e.g. eval.slot=context or off)")
        if track == RECORD_TRACK and run.cfg.eval.val_max_tokens > 0:
            raise UserError(f"run {run.result.run_dir} scored only the first "
                            f"{run.cfg.eval.val_max_tokens:,} val tokens "
                            "(eval.val_max_tokens): a record is scored on the full validation split; re-run with "
                            "eval.val_max_tokens=0 or submit to --track non_record_16mb")


def _check_same(runs: list[SubmissionRun]) -> None:
    first = runs[0]
    reference = _comparable(first.cfg)
    for run in runs[1:]:
        for key, value in _comparable(run.cfg).items():
            if reference.get(key) != value:
                raise UserError(f"runs {first.result.run_dir} and {run.result.run_dir} differ in {key} "
                                f"({reference.get(key)!r} vs {value!r}): a record's seeds must run one configuration")
        if run.result.summary["manifest"]["code_sha256"] != first.result.summary["manifest"]["code_sha256"]:
            raise UserError(f"runs {first.result.run_dir} and {run.result.run_dir} ran different pgolf code "
                            "(manifest code_sha256): submit runs of one code version")


def _comparable(cfg: Config) -> dict[str, Any]:
    flat = {f"{s}.{k}": v for s, entries in cfg.to_dict().items() for k, v in entries.items()}
    return {k: v for k, v in flat.items() if k not in ("run.seed", "run.run_id", "run.out_dir")}


def technique_rows(cfg: Config) -> list[tuple[str, Any, Any, str, str]]:
    """(key, value, baseline value, technique, source) for every setting that differs from the baseline."""
    baseline = _comparable(load_config("baseline", env={}))
    rows = []
    for key, value in _comparable(cfg).items():
        section = key.split(".")[0]
        if section in ("data", "run") or key in _OPERATIONAL or baseline.get(key) == value:
            continue
        technique, source = TECHNIQUE_SOURCES.get(key, ("changed setting", "no source recorded"))
        rows.append((key, value, baseline.get(key), technique, source))
    return rows


def _budget(runs: list[SubmissionRun], code_bytes: int) -> list[int]:
    totals = []
    for run in runs:
        model = int(run.result.summary["model_bytes"])
        total = code_bytes + model
        if total > BUDGET_BYTES:
            raise UserError(f"run {run.result.run_dir} is {total - BUDGET_BYTES:,} bytes over the "
                            f"{BUDGET_BYTES:,}-byte cap "
                            f"(train_gpt.py {code_bytes:,} + model {model:,} = {total:,}): try --form compressed, "
                            "or a smaller model / stronger codec")
        totals.append(total)
    return totals


def _hardware(summary: dict[str, Any]) -> str:
    env = summary["manifest"]["environment"]
    return f"{env['world_size']}× {env['device_name']}"


def _seed_results(runs: list[SubmissionRun], code_bytes: int) -> list[dict[str, Any]]:
    return [{"seed": r.seed, "val_bpb": r.result.summary["val_bpb"], "val_loss": r.result.summary["val_loss"],
             "pre_quant_val_bpb": r.result.summary["pre_quant_val_bpb"], "steps": r.result.summary["steps"],
             "step_avg_ms": r.result.metrics["step_ms"],
             "artifact_bytes": code_bytes + int(r.result.summary["model_bytes"]),
             "run_id": r.result.run_id} for r in runs]


def submission_json(runs: list[SubmissionRun], export: ExportInfo, totals: list[int], name: str, author: str,
                    github_id: str, blurb: str, track: str) -> dict[str, Any]:
    bpb = aggregate([r.result.summary["val_bpb"] for r in runs])
    loss = aggregate([r.result.summary["val_loss"] for r in runs])
    first = runs[0].result.summary
    env = first["manifest"]["environment"]
    def std(value: float) -> float | None:
        return None if math.isnan(value) else value
    return {
        "author": author, "github_id": github_id, "name": name, "blurb": blurb, "date": time.strftime("%Y-%m-%d"),
        "track": track, "val_loss": loss.mean, "val_bpb": bpb.mean, "bytes_total": max(totals),
        "bytes_code": export.bytes, "seeds": [r.seed for r in runs], "seed_results": _seed_results(runs, export.bytes),
        "val_bpb_std": std(bpb.std), "val_loss_std": std(loss.std),
        "artifact_bytes_mean": sum(totals) / len(totals), "artifact_bytes_max": max(totals),
        "train_steps_mean": sum(r.result.summary["steps"] for r in runs) / len(runs),
        "step_avg_ms_mean": sum(r.result.metrics["step_ms"] for r in runs) / len(runs),
        "hardware": _hardware(first), "pytorch_version": env["torch"], "cuda_version": env["cuda"],
        "attention_backend": env["attention_backend"],
        "technique_summary": "; ".join(f"{t} ({k} = {v})" for k, v, _, t, _ in technique_rows(runs[0].cfg))
                             or "baseline",
        "code_form": export.form, "pgolf_code_sha256": first["manifest"]["code_sha256"],
    }


def _readme(runs: list[SubmissionRun], export: ExportInfo, totals: list[int], meta: dict[str, Any]) -> str:
    cfg, first = runs[0].cfg, runs[0].result.summary
    m, t = cfg.model, cfg.train
    lines = [f"# {meta['name']}", "", meta["blurb"] or "", "",
             f"**val_bpb {meta['val_bpb']:.5f}**" + (f" (mean of {len(runs)} seeds, std {meta['val_bpb_std']:.5f})"
                                                     if meta["val_bpb_std"] is not None else f" (seed {runs[0].seed})")
             + f" · val_loss {meta['val_loss']:.5f} nats · at most {meta['bytes_total']:,} bytes "
             f"(train_gpt.py {export.bytes:,} + model) · {meta['hardware']}", "",
             "## Results", "",
             "| seed | val_bpb | val_loss | pre-quant val_bpb | steps | ms/step | train s | bytes (code + model) |",
             "|---|---|---|---|---|---|---|---|"]
    for run, total in zip(runs, totals, strict=True):
        s = run.result.summary
        lines.append(f"| {run.seed} | {s['val_bpb']:.5f} | {s['val_loss']:.5f} | {s['pre_quant_val_bpb']:.5f} | "
                     f"{s['steps']} | {run.result.metrics['step_ms']:.1f} | {s['wallclock_s']:.1f} | {total:,} |")
    lines += ["", f"Scored on {first['val_tokens']:,} validation tokens = {first['val_bytes']:,} bytes "
              "(exact byte accounting; every log carries the per-run manifest).", "",
              "## Architecture", "",
              f"{first['params']:,} parameters: {m.num_layers} layers, width {m.model_dim}, {m.num_heads} heads / "
              f"{m.num_kv_heads} KV heads, MLP {m.mlp_mult:g}× ({m.activation}), vocabulary {m.vocab_size}, "
              f"{'tied' if m.tie_embeddings else 'untied'} embeddings, logit softcap {m.logit_softcap:g}, RoPE base "
              f"{m.rope_base:g}. {t.train_batch_tokens:,} tokens per step at sequence length {t.train_seq_len}, "
              f"wallclock cap {t.max_wallclock_seconds:g} s. Weights: {cfg.quant.scheme} + {first['codec']}.", "",
              "## Techniques and sources", ""]
    rows = technique_rows(cfg)
    if rows:
        lines += ["Every setting that differs from the official baseline "
                  "(section numbers: pgolf's technique reference).",
                  "", "| setting | value | baseline | technique | source |", "|---|---|---|---|---|"]
        lines += [f"| `{k}` | {v} | {b} | {tech} | {src} |" for k, v, b, tech, src in rows]
    else:
        lines.append("The official baseline configuration, unchanged.")
    world = first["manifest"]["environment"]["world_size"]
    launcher = f"torchrun --standalone --nproc_per_node={world} train_gpt.py" if world > 1 else "python train_gpt.py"
    lines += ["", "## Reproduce", "", "```bash", "pip install -r requirements.txt",
              *(f"SEED={r.seed} RUN_ID=seed{r.seed} {launcher}" for r in runs), "```", "",
              "Set DATA_PATH and TOKENIZER_PATH if the data is not where the embedded config says. "
              "With pgolf installed, `pgolf reproduce runs/<id>/summary.json` re-runs one "
              "run from its manifest and compares the result.", "",
              "## Files", "",
              f"- `train_gpt.py`: {export.bytes:,} bytes ({export.form}; sha256 `{export.sha256[:16]}…`), pgolf "
              f"{len(export.modules)} modules and the resolved config; these bytes are the code bytes of the budget.",
              *(f"- `train_seed{r.seed}.log`: the log of run `{r.result.run_id}` (it embeds the code and manifest)"
                for r in runs),
              "- `submission.json`, `requirements.txt`", ""]
    return "\n".join(lines)


def _requirements(summary: dict[str, Any]) -> str:
    lines = []
    for package in _RUNTIME_PACKAGES:
        if package == "torch":
            version = summary["manifest"]["environment"]["torch"].split("+")[0]
        else:
            version = metadata.version(package)
        lines.append(f"{package}=={version}")
    return "\n".join(lines + ["tomli>=2.0; python_version < '3.11'"]) + "\n"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_") or "submission"


def submit(run_paths: list[Path], name: str, author: str, github_id: str, out: Path | None = None, blurb: str = "",
           track: str = RECORD_TRACK, form: str | None = None) -> Path:
    """Write the records folder; return its path. `form` of train_gpt.py: the runs' quant.code_form by default
    (itself `compressed` by default: minified, in the smallest self-extracting wrapper)."""
    if not run_paths:
        raise UserError("pgolf submit needs at least one run directory")
    runs = _load_runs(run_paths)
    _check_track(runs, track)
    _check_same(runs)
    folder = out if out is not None else Path("records") / f"{time.strftime('%Y-%m-%d')}_{_slug(name)}"
    if folder.exists():
        raise UserError(f"{folder} already exists: choose another --out or remove it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        first = runs[0]
        export = write_export(staging / "train_gpt.py", first.cfg, name, first.result.run_id,
                              first.result.summary["manifest"]["code_sha256"], form or first.cfg.quant.code_form)
        totals = _budget(runs, export.bytes)
        meta = submission_json(runs, export, totals, name, author, github_id, blurb, track)
        atomic_write_json(staging / "submission.json", meta)
        atomic_write_text(staging / "README.md", _readme(runs, export, totals, meta))
        atomic_write_text(staging / "requirements.txt", _requirements(first.result.summary))
        for run in runs:
            shutil.copyfile(run.result.run_dir / "train.log", staging / f"train_seed{run.seed}.log")
        (staging / "train_gpt.py").chmod(0o755)
        staging.chmod(0o755)  # mkdtemp makes it private
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def describe(folder: Path) -> str:
    meta = json.loads((folder / "submission.json").read_text(encoding="utf-8"))
    return (f"records folder: {folder}\nval_bpb {meta['val_bpb']:.5f} over seeds {meta['seeds']}; bytes_total "
            f"{meta['bytes_total']:,} (train_gpt.py {meta['bytes_code']:,}, {meta['code_form']})")
