"""Calibration sources that read training data: the `loader` source replays the run's first training batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pgolf.data.loader import make_train_loader
from pgolf.data.shards import write_shard
from pgolf.quant.calibration import loader_sequences


def test_loader_calibration_is_rank_0s_share_of_the_first_training_batches(tmp_path: Path) -> None:
    """As PR #1291's collect_hessians: a fresh loader (the training loader's fixed seed) gives the windows the run
    trained on first; each row is a batch row plus its last target (seq_len + 1 tokens)."""
    rng = np.random.default_rng(0)
    shards = []
    for i in range(3):
        shards.append(tmp_path / f"fineweb_train_{i:06d}.bin")
        write_shard(shards[-1], rng.integers(0, 1000, 4000))
    rows = loader_sequences(make_train_loader("coprime", shards, 0, 2), 10, 512, 32, 2)
    training = make_train_loader("coprime", shards, 0, 2)
    batches = [training.next_batch(512, 32, 2) for _ in range(2)]  # 512 / (2 ranks × 2 micro-steps) = 4 rows each
    for x, y in batches:
        assert x.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    expected = torch.cat([torch.cat((x, y[:, -1:]), dim=1) for x, y in batches])
    assert rows.shape == (10, 33) and rows.dtype == torch.int64
    assert torch.equal(rows[:8], expected)
