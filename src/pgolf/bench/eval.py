"""`pgolf bench eval`: tokens/s and val_bpb of each scoring mode on the same weights and tokens.

Modes: plain, sliding (stride 64 unless eval.stride says otherwise), score-first full TTT, LoRA TTT
and context-only SLOT — all compliant. Each reports its measured tokens/s, its projection to the
full official val set on 8 GPUs at that per-device rate, and its bpb on the measured prefix.
Without a target the preset's freshly initialised model is timed (its bpb means nothing).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from pgolf.config import Config
from pgolf.data.resolve import load_eval_data, resolve_dataset
from pgolf.evaluate.modes import Mode, device_name, run_stages, stride_of
from pgolf.model.gpt import build_model, count_parameters
from pgolf.targets import LoadedTarget
from pgolf.train.distributed import init_distributed, seed_everything
from pgolf.train.runtime import autocast_dtype
from pgolf.utils import atomic_write_json

BENCH_MODES = (Mode("blocks"), Mode("sliding"), Mode("sliding", ttt="full"), Mode("sliding", ttt="lora"),
               Mode("sliding", slot="context"))
MIN_TTT_CHUNKS = 8


def fresh_target(cfg: Config) -> LoadedTarget:
    """The preset's model at initialisation, with its val data (the caller shuts `ctx` down)."""
    ctx = init_distributed(cfg.train.device)
    seed_everything(cfg.run.seed)
    paths = resolve_dataset(cfg)
    data = load_eval_data(cfg, paths, cfg.train.train_seq_len)
    model = build_model(cfg.model, ctx.device, low_precision_storage=ctx.device.type == "cuda")
    return LoadedTarget(cfg, ctx, model, data, paths, f"fresh:{cfg.run.preset or 'config'}")


def bench_settings(cfg: Config, n_targets: int) -> Config:
    """Stride 64 by default; TTT chunks small enough that the measured prefix has ≥ 8 of them."""
    chunk = min(cfg.eval.ttt_chunk_tokens, max(1, math.ceil(n_targets / MIN_TTT_CHUNKS)))
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, stride=stride_of(cfg), ttt_chunk_tokens=chunk))


def bench_eval(loaded: LoadedTarget, out: Path | None = None) -> dict[str, Any]:
    n_targets = loaded.data.tokens.numel() - 1
    cfg = bench_settings(loaded.cfg, n_targets)
    ctx = loaded.ctx
    stages = run_stages(loaded.model, list(BENCH_MODES), cfg, loaded.data.tokens, loaded.data.lut, ctx,
                        autocast_dtype(cfg, ctx.device))
    reports = [report for report, _ in stages]
    plain_rate = reports[0]["tokens_per_s"]
    result = {
        "benchmark": "eval", "source": loaded.source, "preset": cfg.run.preset, "device": str(ctx.device),
        "device_name": device_name(ctx.device) if ctx.device.type == "cuda" else platform.processor() or "cpu",
        "world_size": ctx.world_size, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "params": count_parameters(loaded.model), "val_tokens_scored": n_targets,
        "eval_context": cfg.eval.context or cfg.train.train_seq_len, "stride": cfg.eval.stride,
        "ttt_chunk_tokens": cfg.eval.ttt_chunk_tokens, "ttt_epochs": cfg.eval.ttt_epochs,
        "slot_steps": cfg.eval.slot_steps, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "stages": [{**{k: r[k] for k in ("stage", "val_loss", "val_bpb", "val_tokens", "elapsed_s", "tokens_per_s")},
                    "cost_vs_plain": plain_rate / r["tokens_per_s"],
                    "projected_8gpu_full_val_s": r["projection"]["seconds"],
                    "projection_basis": r["projection"]["basis"], "compliant": r["legality"]["compliant"]}
                   for r in reports],
    }
    lines = [f"{loaded.source} on {result['device_name']} ({ctx.device}, {result['threads']} threads), "
             f"{n_targets:,} val tokens, context {result['eval_context']}, stride {cfg.eval.stride}"]
    lines += [f"  {s['stage']:<22} {s['tokens_per_s']:>10,.0f} tok/s  ×{s['cost_vs_plain']:>6.1f} plain cost  "
              f"val_bpb {s['val_bpb']:.5f}  8-GPU full-val projection {s['projected_8gpu_full_val_s']:,.0f} s"
              for s in result["stages"]]
    result["report"] = "\n".join(lines)
    if out is not None:
        atomic_write_json(out, {k: v for k, v in result.items() if k != "report"})
    return result
