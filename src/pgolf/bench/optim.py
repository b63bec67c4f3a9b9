"""`pgolf bench optim`: Muon vs Parallel Muon, the Newton–Schulz kernel, and the quant gap with late QAT.

Three measurements, each in one invocation so their ratios compare like with like:

* `optimizer_step`: gradient synchronisation + Muon step on the preset's matrices, with synthetic
  gradients: the baseline's round-robin Muon (behind a DDP-style all-reduce of every gradient) against
  Parallel Muon (reduce-scatter of banks, batched Newton–Schulz on the shard, all-gather), in one
  process and in `world_size` gloo processes on CPU (NCCL on GPU).
* `newton_schulz`: the kernel alone at the records' shapes (d 512, 4 KV heads, MLP ×4), one matrix at a
  time against one batched call per shape.
* `late_qat`: the preset trained twice for the same fixed number of steps, without and with late QAT;
  for each, the pre-quant score, the int8 artifact's score and an int-k round-to-nearest roundtrip's
  score (k = `train.qat_bits`), so the gap each run leaves is measured on identical training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.multiprocessing.spawn import spawn

from pgolf.config import Config, config_from_dict
from pgolf.model.gpt import build_model
from pgolf.optim.factory import ns_dtype, partition, qat_bits_for
from pgolf.optim.muon import newton_schulz
from pgolf.optim.parallel_muon import ParallelMuon, average_gradients
from pgolf.optim.round_robin import Muon
from pgolf.quant.qat import roundtrip_state_dict
from pgolf.train.distributed import group_barrier, group_world, join_gloo_group, leave_group
from pgolf.utils import atomic_write_json

# (rows, cols, matrices per 11-layer record model) — Q/O, K/V, MLP up, MLP down at d = 512, MLP ×4
RECORD_SHAPES = ((512, 512, 22), (256, 512, 22), (2048, 512, 11), (512, 2048, 11))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2) -> float:
    times = []
    for i in range(warmup + repeats):
        group_barrier()
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        if i >= warmup:
            times.append(1000.0 * (time.perf_counter() - start))
    return statistics.median(times)


# ---- Newton–Schulz kernel ------------------------------------------------------------------------
def _newton_schulz_each(stack: torch.Tensor, dtype: torch.dtype, variant: str) -> None:
    for m in stack:
        newton_schulz(m, 5, dtype, variant)


def bench_newton_schulz(device: torch.device, dtype: torch.dtype, batch: int | None, repeats: int) -> list[dict]:
    rows_out = []
    torch.manual_seed(0)
    for rows, cols, count in RECORD_SHAPES:
        n = min(batch, count) if batch else count
        stack = torch.randn(n, rows, cols, device=device, dtype=dtype)
        for variant in ("classic", "polar_express"):
            loop = _median_ms(partial(_newton_schulz_each, stack, dtype, variant), device, repeats)
            batched = _median_ms(partial(newton_schulz, stack, 5, dtype, variant), device, repeats)
            rows_out.append({"shape": [rows, cols], "matrices": n, "variant": variant,
                             "loop_ms_per_matrix": loop / n, "batched_ms_per_matrix": batched / n,
                             "batched_vs_loop": batched / loop})
    return rows_out


# ---- optimizer step ------------------------------------------------------------------------------
def _parallel_muon_step(muon: ParallelMuon) -> None:
    muon.sync_gradients()
    muon.step()


def _round_robin_step(muon: Muon, params: list[torch.Tensor], world: int) -> None:
    if world > 1:
        average_gradients(params, world)  # what DDP's backward hooks do
    muon.step()


def _step_times(cfg: Config, device: torch.device, repeats: int) -> dict[str, float]:
    """Median ms of (gradient sync + Muon step) for both flavours, in the current process group."""
    world, _ = group_world()
    out = {}
    for impl in ("round_robin", "parallel"):
        torch.manual_seed(cfg.run.seed)
        model = build_model(cfg.model, device)
        matrix: list[torch.Tensor] = list(partition(model)[0].values())
        matrix_ids = {id(p) for p in matrix}
        others: list[torch.Tensor] = [p for p in model.parameters() if id(p) not in matrix_ids]
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        o = cfg.optim
        options: dict[str, Any] = dict(lr=o.matrix_lr, momentum=o.muon_momentum, backend_steps=o.muon_backend_steps,
                                       ns_dtype=ns_dtype(cfg, device), ns_variant=o.muon_ns_variant,
                                       row_normalize=o.muon_row_normalize, weight_decay=o.muon_weight_decay)
        if impl == "parallel":
            step = partial(_parallel_muon_step, ParallelMuon(matrix, replicated=others, **options))
        else:
            step = partial(_round_robin_step, Muon(matrix, **options), list(model.parameters()), world)
        out[impl] = _median_ms(step, device, repeats)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg_dict: dict, repeats: int, result_path: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    join_gloo_group(rank, world)
    try:
        times = _step_times(config_from_dict(cfg_dict), torch.device("cpu"), repeats)
        if rank == 0:
            atomic_write_json(Path(result_path), times)
    finally:
        leave_group()


def bench_optimizer_step(cfg: Config, device: torch.device, world_size: int, repeats: int) -> dict[str, Any]:
    single = _step_times(cfg, device, repeats)
    result: dict[str, Any] = {"processes_1": single | {"parallel_vs_muon": single["parallel"] / single["round_robin"]}}
    if world_size > 1 and device.type == "cpu":
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "times.json")
            spawn(_worker, args=(world_size, _free_port(), cfg.to_dict(), repeats, path), nprocs=world_size)
            multi = json.loads(Path(path).read_text())
        result[f"processes_{world_size}_gloo"] = multi | {"parallel_vs_muon": multi["parallel"] / multi["round_robin"]}
    return result


# ---- late QAT quant gap --------------------------------------------------------------------------
def bench_late_qat(cfg: Config, device: torch.device, steps: int, threshold: float) -> dict[str, Any]:
    from pgolf.data.resolve import load_eval_data, resolve_dataset
    from pgolf.evaluate.orchestrate import evaluate_model
    from pgolf.packing import load_packed_state
    from pgolf.pipeline import run_train
    from pgolf.rundir import WEIGHTS_NAME
    from pgolf.train.distributed import DistContext

    bits = cfg.train.qat_bits
    out: dict[str, Any] = {"steps": steps, "threshold": threshold, "bits": bits,
                           "warmdown_iters": cfg.train.warmdown_iters, "val_max_tokens": cfg.eval.val_max_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        for label, qat_threshold in (("without_qat", 0.0), ("with_late_qat", threshold)):
            run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(
                cfg.train, iterations=steps, max_wallclock_seconds=0.0, late_qat_threshold=qat_threshold,
                checkpoint_every=0, val_loss_every=0),
                run=dataclasses.replace(cfg.run, out_dir=tmp, run_id=label))
            summary = run_train(run_cfg)
            ctx = DistContext(0, 1, 0, device, None)
            weights, _ = load_packed_state(Path(tmp) / label / WEIGHTS_NAME)
            model = build_model(run_cfg.model, ctx.device)
            model.load_state_dict(roundtrip_state_dict(weights, qat_bits_for(model, bits)))
            data = load_eval_data(run_cfg, resolve_dataset(run_cfg), run_cfg.train.train_seq_len)
            intk = evaluate_model(model, data, run_cfg, ctx)[0]
            out[label] = {"pre_quant_val_bpb": summary["pre_quant_val_bpb"], "int8_val_bpb": summary["val_bpb"],
                          f"int{bits}_rtn_val_bpb": intk.val_bpb,
                          "int8_gap": summary["val_bpb"] - summary["pre_quant_val_bpb"],
                          f"int{bits}_gap": intk.val_bpb - summary["pre_quant_val_bpb"]}
    gap = f"int{bits}_gap"
    out[f"int{bits}_gap_ratio_qat_vs_none"] = out["with_late_qat"][gap] / out["without_qat"][gap]
    return out


# ---- entry point ---------------------------------------------------------------------------------
def bench_optim(cfg: Config, world_size: int = 2, repeats: int = 5, ns_batch: int | None = None,
                qat_steps: int = 150, qat_threshold: float = 0.15, skip_qat: bool = False,
                out: Path | None = None) -> dict[str, Any]:
    device = torch.device("cuda") if torch.cuda.is_available() and cfg.train.device != "cpu" else torch.device("cpu")
    if cfg.train.threads > 0 or device.type == "cpu":
        # on CPU one thread by default: the gloo workers run one thread each, so ratios compare equal compute
        torch.set_num_threads(cfg.train.threads or 1)
    dtype = ns_dtype(cfg, device)
    result: dict[str, Any] = {
        "benchmark": "optim", "preset": cfg.run.preset, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "ns_dtype": str(dtype).replace("torch.", ""),
        "optimizer_step_ms": bench_optimizer_step(cfg, device, world_size, repeats),
        "newton_schulz": bench_newton_schulz(device, dtype, ns_batch or (None if device.type == "cuda" else 4),
                                             repeats),
    }
    if not skip_qat:
        result["late_qat"] = bench_late_qat(cfg, device, qat_steps, qat_threshold)
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    result["report"] = _report(result)
    if out is not None:
        atomic_write_json(out, {k: v for k, v in result.items() if k != "report"})
    return result


def _report(r: dict[str, Any]) -> str:
    lines = [f"device {r['device_name']} ({r['device']}, {r['threads']} threads), Newton–Schulz dtype {r['ns_dtype']}"]
    for setting, times in r["optimizer_step_ms"].items():
        lines.append(f"optimizer step ({setting.replace('_', ' ')}): Muon {times['round_robin']:.2f} ms, "
                     f"Parallel Muon {times['parallel']:.2f} ms → {times['parallel_vs_muon']:.2f}×")
    for row in r["newton_schulz"]:
        lines.append(f"Newton–Schulz {row['variant']:<13} {row['shape'][0]}×{row['shape'][1]} ×{row['matrices']}: "
                     f"loop {row['loop_ms_per_matrix']:.2f} ms/matrix, batched {row['batched_ms_per_matrix']:.2f} "
                     f"ms/matrix ({row['batched_vs_loop']:.2f}×)")
    if "late_qat" in r:
        q = r["late_qat"]
        bits = q["bits"]
        for label in ("without_qat", "with_late_qat"):
            v = q[label]
            lines.append(f"{label.replace('_', ' ')}: pre-quant {v['pre_quant_val_bpb']:.4f}, "
                         f"int8 gap {v['int8_gap']:+.4f}, int{bits} gap {v[f'int{bits}_gap']:+.4f} bpb")
        lines.append(f"late QAT (threshold {q['threshold']}, {q['steps']} steps) leaves "
                     f"{q[f'int{bits}_gap_ratio_qat_vs_none']:.2f}× the int{bits} gap")
    return "\n".join(lines)
