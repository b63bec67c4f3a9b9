"""Calibration tokens for GPTQ Hessians and sensitivity fitting, with their legality (TECHNIQUES §4.5.2).

Sources (config `quant.calibration`):

* ``ar``    — autoregressively self-generated: the trained model samples its own sequences (first token
  uniform, temperature `quant.calibration_temperature`, fixed seed), as PRs #1019/#1291 do. It reads
  no dataset at all, so it is legal at any time after training.
* ``train`` — sequences from the start of the training shards. Legal only when the calibration pass
  runs inside the training time budget; collecting Hessians from training data after the 600 s was
  ruled out, so a record run must reserve that time.
* ``loader`` — the first batches a fresh training loader (`data.loader`) gives rank 0: the windows the
  run trained on first, as PR #1291 reads them (its calibration loader is a new instance with the training
  loader's fixed seed). Same legality as ``train``.

The legality notes live beside the config field (`config.CALIBRATION_SOURCES`) and are recorded in
the artifact; validation data is never a calibration source (`config.validate` rejects it by name).
The sampler of ``ar`` is its own module (`pgolf.quant.self_generated`): only runs that use it ship it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from pgolf.config import CALIBRATION_SOURCES, Config, resolve_grad_accum
from pgolf.data.loader import TokenStream, TrainLoader, make_train_loader
from pgolf.model.gpt import GPT
from pgolf.precision import autocast_dtype

CALIBRATION_BATCH = 8  # sequences per forward pass (self-generation, GPTQ Hessians)
TrainFiles = Callable[[], list[Path]]
Calibration = tuple[Tensor, dict[str, Any]]  # token rows and their record for the artifact's meta


def calibration_sequences(cfg: Config, model: GPT, train_files: TrainFiles, world_size: int = 1) -> Calibration:
    """Calibration token rows (count, seq_len + 1) from `quant.calibration`, and their record for the meta.

    `world_size` is the training run's: `loader` replays rank 0's share of its first batches."""
    q = cfg.quant
    seq_len = q.calibration_seq_len or cfg.train.train_seq_len
    start = time.perf_counter()
    if q.calibration == "train":
        sequences = train_sequences(train_files(), q.calibration_seqs, seq_len)
    elif q.calibration == "loader":
        loader = make_train_loader(cfg.data.loader, train_files(), 0, world_size)
        sequences = loader_sequences(loader, q.calibration_seqs, cfg.train.train_batch_tokens, seq_len,
                                     resolve_grad_accum(cfg, world_size))
    else:
        from pgolf.quant.self_generated import self_generated_sequences  # only `ar` runs import (and ship) it

        sequences = self_generated_sequences(model, q.calibration_seqs, seq_len, q.calibration_temperature,
                                             q.calibration_seed, CALIBRATION_BATCH,
                                             autocast_dtype(cfg, next(model.parameters()).device))
    meta = {"source": q.calibration, "legality": CALIBRATION_SOURCES[q.calibration], "sequences": q.calibration_seqs,
            "seq_len": seq_len, "tokens": q.calibration_seqs * seq_len,
            "seconds": round(time.perf_counter() - start, 3)}
    return sequences, meta


def train_sequences(files: Sequence[str | os.PathLike[str]], count: int, seq_len: int) -> Tensor:
    """`count` consecutive (seq_len + 1)-token rows from the start of the training stream (int64)."""
    stream = TokenStream(files)
    rows = stream.take(count * (seq_len + 1)).astype(np.int64).reshape(count, seq_len + 1)
    return torch.from_numpy(rows)


def loader_sequences(loader: TrainLoader, count: int, global_tokens: int, seq_len: int, grad_accum: int) -> Tensor:
    """The first `count` (seq_len + 1)-token rows `loader` yields for batches of `global_tokens` (int64, on CPU)."""
    rows: list[Tensor] = []
    while sum(len(r) for r in rows) < count:
        x, y = loader.next_batch(global_tokens, seq_len, grad_accum)
        rows.append(torch.cat((x, y[:, -1:]), dim=1).cpu().long())
    return torch.cat(rows)[:count]
