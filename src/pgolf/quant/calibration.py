"""Calibration tokens for GPTQ Hessians and sensitivity fitting, with their legality (TECHNIQUES §4.5.2).

Sources (config `quant.calibration`):

* ``ar``    — autoregressively self-generated: the trained model samples its own sequences (first token
  uniform, temperature `quant.calibration_temperature`, fixed seed), as PRs #1019/#1291 do. It reads
  no dataset at all, so it is legal at any time after training.
* ``train`` — sequences from the start of the training shards. Legal only when the calibration pass
  runs inside the training time budget; collecting Hessians from training data after the 600 s was
  ruled out, so a record run must reserve that time.

The legality notes live beside the config field (`config.CALIBRATION_SOURCES`) and are recorded in
the artifact; validation data is never a calibration source (`config.validate` rejects it by name).
Sampling recomputes the whole prefix at every step (the model has no KV cache): cost grows with
seq_len², which is fine on a GPU and for small CPU calibration sets.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from pgolf.data.loader import TokenStream
from pgolf.model.gpt import GPT


def train_sequences(files: Sequence[str | os.PathLike[str]], count: int, seq_len: int) -> Tensor:
    """`count` consecutive (seq_len + 1)-token rows from the start of the training stream (int64)."""
    stream = TokenStream(files)
    rows = stream.take(count * (seq_len + 1)).astype(np.int64).reshape(count, seq_len + 1)
    return torch.from_numpy(rows)


@torch.no_grad()
def self_generated_sequences(model: GPT, count: int, seq_len: int, temperature: float, seed: int,
                             batch_size: int = 8, autocast_dtype: torch.dtype | None = None) -> Tensor:
    """`count` sequences of seq_len + 1 tokens sampled from `model` itself (int64, on CPU)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    vocab = model.cfg.vocab_size
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    was_training = model.training
    model.eval()
    out: list[Tensor] = []
    try:
        with autocast:
            for start in range(0, count, batch_size):
                rows = min(batch_size, count - start)
                ids = torch.randint(0, vocab, (rows, 1), device=device, generator=generator)
                for _ in range(seq_len):
                    logits = model.logits(model.hidden(ids)[:, -1:]).float()[:, -1]
                    probs = torch.softmax(logits / temperature, dim=-1)
                    ids = torch.cat((ids, torch.multinomial(probs, 1, generator=generator)), dim=1)
                out.append(ids.cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)
