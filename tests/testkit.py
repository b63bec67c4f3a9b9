"""Shared test helpers: shipped tokenizer paths, a small real dataset builder, tiny-model overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pgolf.data.build import DatasetPaths, build_dataset, embedded_corpus_files

if TYPE_CHECKING:
    from torch import Tensor

T = TypeVar("T")

SHIPPED_SP1024 = Path(__file__).parents[1] / "src" / "pgolf" / "data" / "tokenizers" / "fineweb_1024_bpe.model"
SHIPPED_SP8192 = SHIPPED_SP1024.with_name("fineweb_8192_bpe.model")


def _first_docs(src: Path, count: int, dest: Path) -> Path:
    lines = src.read_text(encoding="utf-8").splitlines()[:count]
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def build_small_dataset(root: Path) -> DatasetPaths:
    """60 train and 12 val documents of the embedded FineWeb sample, shipped sp1024 tokenizer."""
    train_files, val_files = embedded_corpus_files()
    train = _first_docs(train_files[0], 60, root / "train.jsonl")
    val = _first_docs(val_files[0], 12, root / "val.jsonl")
    return build_dataset([train], root / "out", name="small_sp1024", tokenizer=SHIPPED_SP1024, val_inputs=[val])


def tiny_overrides(paths: DatasetPaths, **extra: object) -> list[str]:
    """A 2-layer, 64-wide model on `paths`, fp32, no wallclock cap: deterministic and fast."""
    values: dict[str, object] = {
        "data.dataset": str(paths.dataset_dir), "data.tokenizer": str(paths.tokenizer_path),
        "model.vocab_size": 1024, "model.num_layers": 2, "model.model_dim": 64, "model.num_heads": 2,
        "model.num_kv_heads": 1, "train.train_seq_len": 64, "train.train_batch_tokens": 512,
        "train.grad_accum_steps": 1, "train.iterations": 6, "train.warmdown_iters": 3, "train.warmup_steps": 0,
        "train.max_wallclock_seconds": 0, "train.train_log_every": 1, "train.val_loss_every": 0,
        "train.dtype": "fp32", "train.compile": "off", "train.device": "cpu",
        "eval.val_batch_size": 4096, "eval.val_max_tokens": 8192,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def present(value: T | None) -> T:
    """`value`, asserted not None: an optional field the code under test must have filled."""
    assert value is not None
    return value


def same_tensor(x: Tensor | None, y: Tensor | None) -> bool:
    """Both None, or equal tensors: an optional field such as a quantization scale."""
    import torch

    return (x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def mixing_model(cfg, seed: int = 0):
    """A model of `cfg.model` at init, perturbed so the zero-initialised output projections are not
    zero: attention then mixes positions and every layer matters (legality tests need that)."""
    import torch

    from pgolf.model.gpt import build_model

    torch.manual_seed(seed)
    model = build_model(cfg.model, torch.device("cpu"))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return model.eval()


SOTA_RECORD = Path(__file__).parents[2] / "shared" / "records" / "sota_1855" / "train_gpt.py"


def record_functions(*names: str, record: Path = SOTA_RECORD) -> dict:
    """Top-level functions (and constants assigned at top level) of a record script, compiled alone with
    torch, numpy and the standard modules they use in scope: the record scripts import GPU-only modules at
    the top, so they cannot be imported whole on CPU."""
    import ast
    import collections
    import io
    import os
    import subprocess

    import numpy as np
    import torch

    def wanted(node: ast.stmt) -> bool:
        if isinstance(node, ast.Assign):
            return any(isinstance(t, ast.Name) and t.id in names for t in node.targets)
        return isinstance(node, ast.FunctionDef) and node.name in names

    tree = ast.parse(record.read_text(encoding="utf-8"))
    module = ast.Module([n for n in tree.body if wanted(n)], [])
    scope: dict = {"torch": torch, "np": np, "collections": collections, "io": io, "os": os, "subprocess": subprocess}
    exec(compile(module, str(record), "exec"), scope)  # trusted read-only reference script
    return {name: scope[name] for name in names}
