"""val_bpb against a hand-computed example on the official sp8192 tokenizer."""

from __future__ import annotations

import math

import pytest
import torch

from pgolf.data.tokenizer import build_byte_lut, load_sentencepiece
from pgolf.evaluate.bpb import bits_per_byte
from pgolf.evaluate.plain import EvalSetup, evaluate_plain
from testkit import SHIPPED_SP8192

# 5 + 1 + 6 ("wörld": ö is 2 bytes) + 1 + 4 (emoji, byte-fallback) + 1 + 6 (two CJK chars) = 24 bytes
DOC1 = "Hello wörld 🙂 你好"
# 3 + 1 + 2 + 1 + 4 = 11 bytes; the second document starts after a BOS
DOC2 = "The end, ok"


def fake_losses(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A deterministic 'model': the loss of a target depends only on its id."""
    return ((y % 7) + 1).to(torch.float32) * 0.25


def stream() -> tuple[torch.Tensor, list[int]]:
    sp = load_sentencepiece(SHIPPED_SP8192)
    ids = [1, *sp.encode(DOC1), 1, *sp.encode(DOC2)]
    return torch.tensor(ids, dtype=torch.int64), ids


def test_hand_computed_bytes_and_bpb() -> None:
    sp = load_sentencepiece(SHIPPED_SP8192)
    assert len(DOC1.encode()) == 24 and len(DOC2.encode()) == 11
    pieces = sp.encode(DOC1, out_type=str)
    assert any(p.startswith("<0x") for p in pieces), pieces  # the emoji goes through byte fallback
    assert any(p.startswith("▁") for p in pieces)  # leading-space pieces are exercised
    tokens, ids = stream()
    lut = build_byte_lut(sp, 8192)
    result, losses = evaluate_plain(fake_losses, tokens, lut, EvalSetup(seq_len=1, batch_tokens=8), torch.device("cpu"),
                                    collect_losses=True)
    targets = ids[1:]
    expected_loss_sum = sum(((t % 7) + 1) * 0.25 for t in targets)
    assert result.val_tokens == len(targets)
    assert result.val_bytes == 24 + 11  # the BOS target is credited 0 bytes
    assert result.loss_sum_nats == pytest.approx(expected_loss_sum, rel=0, abs=1e-12)
    assert result.val_loss == expected_loss_sum / len(targets)
    assert result.val_bpb == (expected_loss_sum / len(targets) / math.log(2)) * (len(targets) / 35)
    assert losses is not None and losses.dtype.name == "float64" and len(losses) == len(targets)


def test_ranks_and_batches_partition_the_stream_exactly() -> None:
    tokens, _ = stream()
    sp = load_sentencepiece(SHIPPED_SP8192)
    lut = build_byte_lut(sp, 8192)
    seq_len = 3
    usable = ((tokens.numel() - 1) // seq_len) * seq_len + 1
    trimmed = tokens[:usable]
    whole, _ = evaluate_plain(fake_losses, trimmed, lut, EvalSetup(seq_len, batch_tokens=6), torch.device("cpu"))
    cpu = torch.device("cpu")
    parts = [evaluate_plain(fake_losses, trimmed, lut, EvalSetup(seq_len, 6, rank=r, world_size=2), cpu)[0]
             for r in range(2)]
    assert sum(p.val_tokens for p in parts) == whole.val_tokens == usable - 1
    assert sum(p.val_bytes for p in parts) == whole.val_bytes
    assert sum(p.loss_sum_nats for p in parts) == pytest.approx(whole.loss_sum_nats, abs=1e-12)


def test_bits_per_byte_formula_and_guard() -> None:
    loss, bpb = bits_per_byte(10.0, 4.0, 8.0)
    assert loss == 2.5 and bpb == (2.5 / math.log(2)) * 0.5
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0.0, 1.0)
