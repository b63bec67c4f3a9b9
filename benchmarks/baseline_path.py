"""Baseline path before/after a change to `pgolf.model`, in one process.

Loads `src/pgolf/model` as it was at a git ref (default: the commit before the techniques landed)
under another package name, builds both models from the same config and seed, checks that they
are the same network (identical initial weights, bit-identical loss and gradients) and times their
forward+backward back to back, alternating, on the same batch (tokens/s from the median step).

    PYTHONPATH=src python benchmarks/baseline_path.py --preset tiny --ref 9a72d5f \
        --out benchmarks/results/baseline_path_tiny_cpu-2core.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from pgolf.config import load_config
from pgolf.model.gpt import build_model
from pgolf.train.runtime import autocast_dtype

OLD_PACKAGE = "pgolf_before_model"


def load_old_model_package(ref: str) -> object:
    archive = subprocess.run(["git", "archive", ref, "src/pgolf/model"], check=True, capture_output=True).stdout
    tmp = Path(tempfile.mkdtemp())
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp, filter="data")
    package = tmp / OLD_PACKAGE
    (tmp / "src" / "pgolf" / "model").rename(package)
    for file in package.glob("*.py"):
        file.write_text(file.read_text().replace("pgolf.model", OLD_PACKAGE))
    sys.path.insert(0, str(tmp))
    return importlib.import_module(f"{OLD_PACKAGE}.gpt")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--ref", default="9a72d5f")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cfg = load_config(args.preset, env={})
    device = torch.device("cpu")
    old_gpt = load_old_model_package(args.ref)
    torch.manual_seed(cfg.run.seed)
    old = old_gpt.build_model(cfg.model, device)
    torch.manual_seed(cfg.run.seed)
    new = build_model(cfg.model, device)
    same_init = all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True))
    same_names = list(old.state_dict()) == list(new.state_dict())
    batch = cfg.train.train_batch_tokens // cfg.train.train_seq_len
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.model.vocab_size, (batch, cfg.train.train_seq_len), generator=gen)
    y = torch.randint(0, cfg.model.vocab_size, (batch, cfg.train.train_seq_len), generator=gen)
    with torch.no_grad():  # leave the identity init so that every sublayer contributes
        for p_old, p_new in zip(old.parameters(), new.parameters(), strict=True):
            noise = 0.02 * torch.randn(p_old.shape, generator=gen)
            p_old.add_(noise)
            p_new.add_(noise)
    dtype = autocast_dtype(cfg, device)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext

    def step(model: torch.nn.Module) -> tuple[float, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        with autocast():
            loss = model(x, y)
        loss.backward()
        elapsed = time.perf_counter() - start
        return elapsed, loss.detach()

    _, loss_old = step(old)
    grads_old = [p.grad.clone() for p in old.parameters()]
    _, loss_new = step(new)
    same_loss = torch.equal(loss_old, loss_new)
    same_grads = all(torch.equal(a, p.grad) for a, p in zip(grads_old, new.parameters(), strict=True))
    times: dict[str, list[float]] = {"before": [], "after": []}
    for i in range(args.rounds):
        for name, model in (("before", old), ("after", new)) if i % 2 == 0 else (("after", new), ("before", old)):
            times[name].append(step(model)[0])
    tokens = batch * cfg.train.train_seq_len  # per step; medians resist load spikes of a shared machine
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "benchmark": "baseline_path", "preset": args.preset, "before_ref": args.ref, "machine": "cpu-2core",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "dtype": str(dtype),
        "identical_state_dict_names": same_names, "identical_initial_weights": same_init,
        "bit_identical_loss": same_loss, "bit_identical_gradients": same_grads,
        "loss": float(loss_new), "rounds": args.rounds,
        "fwd_bwd_tokens_per_s_before": tokens / median["before"], "fwd_bwd_tokens_per_s_after": tokens / median["after"],
        "after_over_before": median["before"] / median["after"],
        "step_seconds_before": times["before"], "step_seconds_after": times["after"],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
