"""The `ar` calibration source: sequences the trained model samples itself (PRs #1019/#1291).

It reads no dataset, so it is legal at any time after training (`pgolf.quant.calibration`). Sampling
recomputes the whole prefix at every step (the model has no KV cache): cost grows with seq_len², which is
fine on a GPU and for small CPU calibration sets. Imported only by runs that calibrate this way.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from pgolf.model.gpt import GPT


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
