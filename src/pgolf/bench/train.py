"""`pgolf bench train`: training throughput and MFU against the machine's measured matmul peak.

In one process: the bf16 and fp32 matmul peaks, the full trainer's tokens/s (Muon, data loading,
schedules; no logging, eval or checkpoints), and a bare forward/backward/AdamW loop on the same
model shape and batch, so `trainer_vs_bare` isolates the trainer's own overhead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
from pathlib import Path
from typing import Any

import torch

from pgolf.bench.peak import measure_matmul_peak
from pgolf.config import Config
from pgolf.model.gpt import build_model, flops_per_token
from pgolf.train.distributed import init_distributed, shutdown
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.runtime import autocast_dtype
from pgolf.train.setup import prepare_training
from pgolf.utils import atomic_write_json


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _trainer_tokens_per_s(cfg: Config, device_ctx: Any, warmup: int, steps: int) -> float:
    bench_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, iterations=warmup, max_wallclock_seconds=0.0, val_loss_every=0, train_log_every=0,
        checkpoint_every=0, warmup_steps=0))
    setup = prepare_training(bench_cfg, device_ctx, None, RunLogger(None, enabled=False), PhaseClock())
    trainer = setup.trainer
    trainer.fit()
    bench_cfg.train.iterations = warmup + steps
    before = trainer.state.training_time_ms
    trainer.fit()
    return steps * cfg.train.train_batch_tokens / ((trainer.state.training_time_ms - before) / 1000.0)


def _bare_tokens_per_s(cfg: Config, device: torch.device, warmup: int, steps: int) -> float:
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model, device, low_precision_storage=device.type == "cuda")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    batch = cfg.train.train_batch_tokens // cfg.train.train_seq_len
    x = torch.randint(0, cfg.model.vocab_size, (batch, cfg.train.train_seq_len), device=device)
    y = torch.randint(0, cfg.model.vocab_size, (batch, cfg.train.train_seq_len), device=device)
    dtype = autocast_dtype(cfg, device)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    elapsed = 0.0
    for i in range(warmup + steps):
        _sync(device)
        start = time.perf_counter()
        with autocast():
            loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        if i >= warmup:
            elapsed += time.perf_counter() - start
    return steps * batch * cfg.train.train_seq_len / elapsed


def bench_train(cfg: Config, steps: int = 20, warmup: int = 3, out: Path | None = None) -> dict[str, Any]:
    ctx = init_distributed(cfg.train.device)
    try:
        device = ctx.device
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        peak_bf16 = measure_matmul_peak(device, torch.bfloat16)
        peak_fp32 = measure_matmul_peak(device, torch.float32)
        trainer_tps = _trainer_tokens_per_s(cfg, ctx, warmup, steps)
        bare_tps = _bare_tokens_per_s(cfg, device, warmup, steps)
    finally:
        shutdown(ctx)
    dtype = autocast_dtype(cfg, device)
    dtype_name = "bf16" if dtype == torch.bfloat16 else "fp32"
    flops = flops_per_token(cfg.model, cfg.train.train_seq_len)
    peak = peak_bf16 if dtype_name == "bf16" else peak_fp32
    result = {
        "benchmark": "train", "preset": cfg.run.preset, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": dtype_name, "steps": steps,
        "batch_tokens": cfg.train.train_batch_tokens, "seq_len": cfg.train.train_seq_len,
        "tokens_per_s": trainer_tps, "bare_tokens_per_s": bare_tps, "trainer_vs_bare": trainer_tps / bare_tps,
        "model_flops_per_token": flops, "peak_flops_bf16": peak_bf16, "peak_flops_fp32": peak_fp32,
        "mfu": trainer_tps * flops / peak, "bare_mfu": bare_tps * flops / peak,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    result["report"] = (
        f"device {result['device_name']} ({device}, {result['threads']} threads), compute dtype {dtype_name}\n"
        f"matmul peak: bf16 {peak_bf16 / 1e9:,.1f} GFLOP/s, fp32 {peak_fp32 / 1e9:,.1f} GFLOP/s (measured now)\n"
        f"trainer: {trainer_tps:,.0f} tokens/s, MFU {result['mfu']:.1%} of the {dtype_name} peak "
        f"({flops / 1e6:.2f} MFLOP/token)\n"
        f"bare fwd/bwd/AdamW loop: {bare_tps:,.0f} tokens/s (MFU {result['bare_mfu']:.1%}); "
        f"trainer_vs_bare {result['trainer_vs_bare']:.3f}"
    )
    if out is not None:
        atomic_write_json(out, {k: v for k, v in result.items() if k != "report"})
    return result
