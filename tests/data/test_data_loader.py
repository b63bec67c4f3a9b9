from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pgolf.data.loader import DistributedTokenLoader, TokenStream
from pgolf.data.shards import write_shard
from pgolf.errors import ConfigError, DataError

SIZES = [100, 37, 250]


@pytest.fixture
def shards(tmp_path: Path) -> tuple[list[Path], np.ndarray]:
    """Three shards whose concatenation is 0, 1, 2, ... (written out of order on purpose)."""
    stream = np.arange(sum(SIZES), dtype=np.int64)
    paths, start = [], 0
    for index, size in enumerate(SIZES):
        paths.append(tmp_path / f"fineweb_train_{index:06d}.bin")
        write_shard(paths[-1], stream[start : start + size])
        start += size
    return paths[::-1], stream


def _cyclic(stream: np.ndarray, start: int, n: int) -> np.ndarray:
    return np.take(stream, np.arange(start, start + n), mode="wrap")


def test_token_stream_crosses_shards_and_wraps(shards: tuple[list[Path], np.ndarray]) -> None:
    files, stream = shards
    ts = TokenStream(files)
    assert [f.name for f in ts.files] == sorted(f.name for f in files)
    position = 0
    for n in [10, 95, 40, 300, 387, 1, 5000]:
        got = ts.take(n)
        assert got.dtype == np.uint16
        assert got.astype(np.int64).tolist() == _cyclic(stream, position, n).tolist()
        position += n


def _baseline_batches(
    stream: np.ndarray, steps: int, world: int, rank: int, global_tokens: int, seq_len: int, accum: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """TECHNIQUES §1.9, written out independently of the implementation."""
    local = global_tokens // (world * accum)
    span = local + 1
    out, pos = [], 0
    for _ in range(steps):
        chunk = _cyclic(stream, pos, span * world)
        pos += span * world
        mine = torch.from_numpy(chunk[rank * span : (rank + 1) * span])
        out.append((mine[:-1].reshape(-1, seq_len), mine[1:].reshape(-1, seq_len)))
    return out


@pytest.mark.parametrize("accum", [1, 2])
def test_rank_slices_match_baseline_arithmetic(shards: tuple[list[Path], np.ndarray], accum: int) -> None:
    files, stream = shards
    global_tokens, seq_len, world = 64 * accum, 8, 2
    for rank in range(world):
        loader = DistributedTokenLoader(files, rank=rank, world_size=world, device="cpu")
        expected = _baseline_batches(stream, 12, world, rank, global_tokens, seq_len, accum)
        for want_x, want_y in expected:
            x, y = loader.next_batch(global_tokens, seq_len, accum)
            assert x.dtype == torch.int64 and x.shape == (32 // seq_len, seq_len)
            assert torch.equal(x, want_x) and torch.equal(y, want_y)
    # Ranks together consume (local+1)·world tokens per step, and their slices are disjoint.
    r0 = DistributedTokenLoader(files, 0, 2).next_batch(64, 8, 1)[0]
    r1 = DistributedTokenLoader(files, 1, 2).next_batch(64, 8, 1)[0]
    assert r0[0, 0] == 0 and r1[0, 0] == 33


def test_state_resume_continues_at_exact_token(shards: tuple[list[Path], np.ndarray]) -> None:
    files, _ = shards
    original = DistributedTokenLoader(files, rank=1, world_size=2)
    for _ in range(7):
        original.next_batch(48, 8, 1)
    state = json.loads(json.dumps(original.state_dict()))  # survives a JSON checkpoint
    resumed = DistributedTokenLoader(files, rank=1, world_size=2)
    resumed.load_state_dict(state)
    for _ in range(5):
        a, b = original.next_batch(48, 8, 1), resumed.next_batch(48, 8, 1)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_state_from_other_shards_is_refused(shards: tuple[list[Path], np.ndarray]) -> None:
    files, _ = shards
    state = DistributedTokenLoader(files, 0, 1).state_dict()
    fewer = DistributedTokenLoader(sorted(files)[:2], 0, 1)
    with pytest.raises(DataError, match="resume with the same dataset"):
        fewer.load_state_dict(state)


def test_batch_not_divisible_is_a_config_error(shards: tuple[list[Path], np.ndarray]) -> None:
    files, _ = shards
    loader = DistributedTokenLoader(files, 0, 2)
    with pytest.raises(ConfigError, match=r"not a positive multiple of train_seq_len=8"):
        loader.next_batch(60, 8, 1)


def test_empty_inputs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no train shards"):
        TokenStream([])
    write_shard(tmp_path / "fineweb_train_000000.bin", np.zeros(0, dtype=np.uint16))
    with pytest.raises(DataError, match="hold no tokens"):
        TokenStream([tmp_path / "fineweb_train_000000.bin"])
