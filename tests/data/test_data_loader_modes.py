from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pgolf.data.coprime import CoprimeStrideLoader
from pgolf.data.loader import DistributedTokenLoader, make_train_loader
from pgolf.data.shards import write_shard
from pgolf.errors import DataError
from pgolf.train.checkpoint import load_checkpoint, save_checkpoint
from testkit import present


@pytest.fixture
def doc_shards(tmp_path: Path) -> list[Path]:
    """Documents of random lengths (BOS = 1, other ids ≥ 2), straddling three shards."""
    rng = np.random.default_rng(0)
    docs = [np.r_[1, rng.integers(2, 1000, rng.integers(5, 60))] for _ in range(120)]
    stream = np.concatenate(docs)
    cuts = [0, stream.size // 3 + 7, 2 * stream.size // 3 - 5, stream.size]
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"fineweb_train_{i:06d}.bin")
        write_shard(paths[-1], stream[cuts[i] : cuts[i + 1]])
    return paths


def test_stream_mode_is_the_baseline_loader(doc_shards: list[Path]) -> None:
    a, b = make_train_loader("stream", doc_shards, 1, 2), DistributedTokenLoader(doc_shards, 1, 2)
    assert type(a) is DistributedTokenLoader
    for _ in range(6):
        assert all(torch.equal(u, v) for u, v in zip(a.next_batch(128, 16, 1), b.next_batch(128, 16, 1), strict=True))
    assert a.state_dict() == b.state_dict() and "mode" not in a.state_dict()  # baseline checkpoints unchanged


def test_doc_aligned_rows_start_at_bos_and_ranks_split_rows(doc_shards: list[Path]) -> None:
    one = make_train_loader("doc_aligned", doc_shards, 0, 1)
    ranks = [make_train_loader("doc_aligned", doc_shards, r, 2) for r in range(2)]
    for _ in range(10):
        x, y = one.next_batch(128, 16, 1)  # 8 rows
        assert (x[:, 0] == 1).all() and torch.equal(x[:, 1:], y[:, :-1])
        parts = [loader.next_batch(128, 16, 1)[0] for loader in ranks]  # 4 rows each
        assert torch.equal(torch.cat(parts), x)


@pytest.mark.parametrize("mode", ["doc_aligned", "coprime"])
def test_resume_through_a_checkpoint_gives_the_same_batches(mode: str, doc_shards: list[Path], tmp_path: Path) -> None:
    original = make_train_loader(mode, doc_shards, 1, 2)
    for _ in range(9):
        original.next_batch(96, 8, 2)
    save_checkpoint(tmp_path / "ck.pt", {"loader": original.state_dict()})
    resumed = make_train_loader(mode, doc_shards, 1, 2)
    resumed.load_state_dict(load_checkpoint(tmp_path / "ck.pt")["loader"])  # weights_only load
    for _ in range(7):
        assert all(torch.equal(u, v) for u, v in zip(original.next_batch(96, 8, 2), resumed.next_batch(96, 8, 2),
                                                     strict=True))
    with pytest.raises(DataError, match=f"saved by the '{mode}' loader"):
        make_train_loader("stream", doc_shards, 1, 2).load_state_dict(original.state_dict())


def test_coprime_visits_every_window_once_per_pass(tmp_path: Path) -> None:
    seq_len, size = 8, 8 * 51  # every phase in [0, 8) leaves exactly 50 windows
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, np.arange(size) + 2)
    loader = CoprimeStrideLoader([path], 0, 1)
    batches = [loader.next_batch(40, seq_len, 1)[0] for _ in range(10)]  # 10 × 5 windows = one pass
    plan = present(loader.plans[0])
    phase, n = plan[0], plan[1]
    starts = sorted(int(x[row, 0]) - 2 for x in batches for row in range(5))
    assert n == 50 and starts == [phase + i * seq_len for i in range(n)]  # a permutation of all windows
    assert plan[3] > 1  # visited with a real stride, not in order


def test_coprime_ranks_share_one_schedule(doc_shards: list[Path]) -> None:
    single = CoprimeStrideLoader(doc_shards, 0, 1)
    ranks = [CoprimeStrideLoader(doc_shards, r, 3) for r in range(3)]
    for _ in range(4):
        x, _ = single.next_batch(96, 8, 1)  # 12 windows
        parts = [loader.next_batch(96, 8, 1)[0] for loader in ranks]  # 4 windows each: windows[r::3]
        for r, part in enumerate(parts):
            assert torch.equal(part, x[r::3])
    x, y = single.next_batch(96, 8, 1)
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_coprime_mixes_several_shards(tmp_path: Path) -> None:
    paths = []
    for i in range(10):
        paths.append(tmp_path / f"fineweb_train_{i:06d}.bin")
        write_shard(paths[-1], np.full(2000, i + 2))  # shard i holds only the token i + 2
    x, _ = CoprimeStrideLoader(paths, 0, 1).next_batch(8 * 32, 8, 1)
    assert len(set(x[:, 0].tolist())) == 8  # 8 distinct shards in the first batch
    state = json.loads(json.dumps(CoprimeStrideLoader(paths, 0, 1).state_dict()))
    assert state["mode"] == "coprime"
