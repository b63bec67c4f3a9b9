"""The one-command device check behind `benchmarks/gpu/check.sh`: pgolf vs the record scripts on one GPU.

For each preset (`baseline`, `sota`) it trains pgolf and the record's own `train_gpt.py` for the same
number of steps on the same synthetic shards (official format, written into the tree), and records
ms/step, tokens/s, MFU against a measured bf16 matmul peak, peak memory, recompiles after warm-up and
evaluation tokens/s. A record script that cannot run (missing FlashAttention 3, a data format it
needs) is reported with its last log line instead of stopping the check. `--dry` runs the same
code on CPU with tiny shapes and skips the record scripts (what the test suite exercises).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgolf.bench.peak import measure_matmul_peak
from pgolf.config import Config, load_config
from pgolf.data.shards import write_shard
from pgolf.doctor import collect
from pgolf.errors import UserError
from pgolf.model.gpt import flops_per_token
from pgolf.pipeline import prepare_training
from pgolf.train.distributed import DistContext
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.utils import atomic_write_json

TOKENIZERS = Path(__file__).resolve().parents[1] / "data" / "tokenizers"
PRESETS = {"baseline": ("baseline", 1024), "sota": ("sota_1855", 8192)}  # preset → (record folder, vocab)
STEP_LINE = re.compile(r"step:(\d+)/(\d+)\b.*?train_time:([\d.]+)ms step_avg:([\d.]+)ms")
DRY_MODEL = {"model.model_dim": 64, "model.num_heads": 2, "model.num_kv_heads": 1,
             "train.train_seq_len": 128, "train.train_batch_tokens": 512, "train.grad_accum_steps": 1,
             "train.compile": "off", "train.dtype": "fp32",
             "eval.val_max_tokens": 4096, "eval.val_batch_size": 2048}


def write_synthetic_shards(folder: Path, vocab: int, train_tokens: int, val_tokens: int, bos_id: int = 1) -> Path:
    """Uniform random tokens with a BOS every ~600 tokens (FineWeb's mean document length), official format."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", train_tokens), ("val", val_tokens)):
        tokens = rng.integers(2, vocab, size=count, dtype=np.uint16)
        tokens[rng.random(count) < 1 / 600] = bos_id
        tokens[0] = bos_id
        write_shard(folder / f"fineweb_{split}_000000.bin", tokens)
    return folder


def _config(preset: str, data: Path, vocab: int, steps: int, batch_tokens: int, dry: bool) -> Config:
    sets: dict[str, object] = {
        "data.dataset": str(data), "data.tokenizer": str(TOKENIZERS / f"fineweb_{vocab}_bpe.model"),
        "data.expected_train_shards": 0, "train.iterations": steps, "train.max_wallclock_seconds": 0,
        "train.val_loss_every": 0, "train.train_log_every": 0, "train.checkpoint_every": 0,
        "train.warmup_steps": 2 if dry else 20, "train.train_batch_tokens": batch_tokens,
        "train.device": "cpu" if dry else "cuda",
    }
    if dry:
        sets.update(DRY_MODEL)
    return load_config(preset, overrides=[f"{k}={v}" for k, v in sets.items()], env={})


class _KeptLines(RunLogger):
    """A logger that keeps its lines in memory (the check reports the compile and kernel notes)."""

    def __init__(self) -> None:
        super().__init__(None, enabled=False)
        self.lines: list[str] = []

    def log(self, message: str, file_only: bool = False) -> None:
        self.lines.append(message)


def run_pgolf(cfg: Config, peak_flops: float) -> dict[str, Any]:
    device = torch.device(cfg.train.device)
    ctx = DistContext(0, 1, 0, device, None)
    logger = _KeptLines()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    setup = prepare_training(cfg, ctx, None, logger, PhaseClock(sync=torch.cuda.synchronize if device.type == "cuda"
                                                                 else (lambda: None)))
    setup.trainer.prime()
    state = setup.trainer.fit()
    seconds = state.training_time_ms / 1000.0
    tokens_per_s = state.train_tokens / max(seconds, 1e-9)
    flops = flops_per_token(cfg.model, cfg.train.train_seq_len) * tokens_per_s
    start = time.perf_counter()
    setup.model.eval()
    setup.trainer.p.evaluate()
    eval_seconds = time.perf_counter() - start
    return {
        "steps": state.step, "ms_per_step": state.training_time_ms / max(state.step, 1), "tokens_per_s": tokens_per_s,
        "mfu": flops / peak_flops if peak_flops > 0 else None, "recompiles_after_warmup": state.recompiles,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "eval_tokens_per_s": (setup.eval_data.tokens.numel() - 1) / eval_seconds,
        "last_train_loss": state.last_train_loss,
        "notes": [line for line in logger.lines
                  if line.startswith(("torch_compile", "doc_attention", "fused_kernels"))],
    }


def run_record(script: Path, data: Path, vocab: int, steps: int, batch_tokens: int, workdir: Path,
               timeout_s: float) -> dict[str, Any]:
    """Train the record script until its step `steps` line, then stop it (its quantization/eval is not timed)."""
    if not script.is_file():
        return {"status": "skipped", "reason": f"{script} not found (set RECORDS_DIR)"}
    env = {**os.environ, "DATA_PATH": str(data), "DATA_DIR": str(data.parent),
           "TOKENIZER_PATH": str(TOKENIZERS / f"fineweb_{vocab}_bpe.model"), "VOCAB_SIZE": str(vocab),
           "ITERATIONS": str(steps), "TRAIN_BATCH_TOKENS": str(batch_tokens), "WARMUP_STEPS": "20",
           "MAX_WALLCLOCK_SECONDS": "0", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": str(max(steps // 4, 1)),
           "RUN_ID": "gpu_check"}
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(script.resolve())]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    last: tuple[int, float, float] | None = None
    tail: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-5:]
        match = STEP_LINE.search(line)
        if match and int(match.group(1)) > 0:
            last = (int(match.group(1)), float(match.group(3)), float(match.group(4)))
        if (last and last[0] >= steps) or time.monotonic() > deadline:
            break
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait()
    if last is None or last[0] < steps:
        return {"status": "failed", "reason": " | ".join(tail)[-600:]}
    step, _, step_avg = last
    return {"status": "ok", "steps": step, "ms_per_step": step_avg, "tokens_per_s": batch_tokens / (step_avg / 1000.0)}


def device_name(dry: bool) -> str:
    if dry or not torch.cuda.is_available():
        return "cpu-dry"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(0).lower()).strip("-")


def gpu_check(out: Path, dry: bool, steps: int, batch_tokens: int, records: Path, presets: list[str],
              workdir: Path, record_timeout_s: float) -> dict[str, Any]:
    if not dry and not torch.cuda.is_available():
        raise UserError("gpu check: CUDA is not available on this machine; run with --dry for the CPU rehearsal")
    device = torch.device("cpu" if dry else "cuda")
    peak = measure_matmul_peak(device, torch.float32 if dry else torch.bfloat16, size=256 if dry else None,
                               seconds=0.2 if dry else 2.0)
    result: dict[str, Any] = {"device": device_name(dry), "dry": dry, "steps": steps, "batch_tokens": batch_tokens,
                              "matmul_peak_tflops": peak / 1e12, "doctor": collect(), "presets": {}}
    for preset in presets:
        record_dir, vocab = PRESETS[preset]
        data = write_synthetic_shards(workdir / f"data_sp{vocab}", vocab, train_tokens=max(batch_tokens * 8, 1 << 16),
                                      val_tokens=1 << (14 if dry else 20))
        cfg = _config(preset, data, vocab, steps, batch_tokens, dry)
        entry: dict[str, Any] = {"pgolf": run_pgolf(cfg, peak)}
        entry["record"] = ({"status": "skipped", "reason": "--dry"} if dry else
                           run_record(records / record_dir / "train_gpt.py", data, vocab, steps, batch_tokens,
                                      workdir / f"record_{preset}", record_timeout_s))
        if entry["record"].get("status") == "ok":
            entry["pgolf_vs_record_tokens_per_s"] = entry["pgolf"]["tokens_per_s"] / entry["record"]["tokens_per_s"]
        result["presets"][preset] = entry
    path = out / f"gpu_check_{result['device']}.json"
    atomic_write_json(path, result)
    result["path"] = str(path)
    return result


def main(argv: list[str] | None = None) -> int:
    description = __doc__.splitlines()[0] if __doc__ else None
    parser = argparse.ArgumentParser(prog="benchmarks/gpu/check.sh", description=description)
    parser.add_argument("--dry", action="store_true", help="CPU rehearsal: tiny shapes, record scripts skipped")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "benchmarks/results"))
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (200; --dry: 3)")
    parser.add_argument("--batch-tokens", type=int, default=None,
                        help="tokens per step for pgolf and the records alike (131072; --dry: 512)")
    parser.add_argument("--records", type=Path, default=Path(os.environ.get("RECORDS_DIR", "../shared/records")))
    parser.add_argument("--presets", default="baseline,sota")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/gpu/_work"))
    parser.add_argument("--record-timeout", type=float, default=150.0, help="seconds per record script run")
    args = parser.parse_args(argv)
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset {unknown[0]!r}: choose from {', '.join(PRESETS)}")
    steps = args.steps or (3 if args.dry else 200)
    batch = args.batch_tokens or (512 if args.dry else 131072)
    try:
        result = gpu_check(args.out, args.dry, steps, batch, args.records, presets, args.workdir, args.record_timeout)
    except UserError as exc:
        print(f"gpu check: error: {exc}", file=sys.stderr)
        return 2
    for preset, entry in result["presets"].items():
        mine, theirs = entry["pgolf"], entry["record"]
        ratio = entry.get("pgolf_vs_record_tokens_per_s")
        print(f"{preset}: pgolf {mine['tokens_per_s']:.0f} tok/s ({mine['ms_per_step']:.1f} ms/step, recompiles "
              f"{mine['recompiles_after_warmup']}); record {theirs.get('status')}"
              + (f" {theirs['tokens_per_s']:.0f} tok/s, pgolf/record {ratio:.3f}" if ratio else ""))
    print(f"wrote {result['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
