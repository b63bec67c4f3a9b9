from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pgolf.data.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    SHARD_VERSION,
    list_shards,
    load_val_tokens,
    open_shard,
    read_num_tokens,
    validate_shard,
    write_shard,
)
from pgolf.errors import DataError


def _raw_shard(path: Path, header: list[int], payload: bytes = b"") -> Path:
    ints = np.zeros(256, dtype="<i4")
    ints[: len(header)] = header
    path.write_bytes(ints.tobytes() + payload)
    return path


def test_roundtrip_matches_official_layout(tmp_path: Path) -> None:
    tokens = np.array([0, 1, 2, 65535, 1234, 7], dtype=np.int64)
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, tokens)
    raw = path.read_bytes()
    assert len(raw) == HEADER_BYTES + 2 * tokens.size
    assert np.frombuffer(raw[:12], dtype="<i4").tolist() == [SHARD_MAGIC, SHARD_VERSION, tokens.size]
    assert not any(raw[12:HEADER_BYTES])
    assert np.frombuffer(raw[HEADER_BYTES:], dtype="<u2").tolist() == tokens.tolist()
    assert read_num_tokens(path) == tokens.size
    mapped = open_shard(path)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert mapped.tolist() == tokens.tolist()
    assert validate_shard(path, vocab_size=65536) == tokens.size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_empty_shard_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    write_shard(path, np.zeros(0, dtype=np.uint16))
    assert read_num_tokens(path) == 0
    assert open_shard(path).size == 0


@pytest.mark.parametrize(("bad", "position"), [(-1, 2), (65536, 1)])
def test_write_refuses_ids_outside_uint16(tmp_path: Path, bad: int, position: int) -> None:
    tokens = np.array([5, 6, 7])
    tokens[position] = bad
    with pytest.raises(DataError, match=rf"token id {bad} at position {position}"):
        write_shard(tmp_path / "x.bin", tokens)
    assert not (tmp_path / "x.bin").exists()


def test_write_refuses_float_tokens(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="1-D integer array"):
        write_shard(tmp_path / "x.bin", np.array([1.0, 2.0]))


def test_missing_shard(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.bin does not exist.*pgolf data"):
        read_num_tokens(tmp_path / "missing.bin")


def test_short_header(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(DataError, match=r"short\.bin is truncated: 100 bytes"):
        read_num_tokens(path)


def test_wrong_magic(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "magic.bin", [12345, 1, 0])
    with pytest.raises(DataError, match=r"magic\.bin has magic 12345, expected 20240520"):
        open_shard(path)


def test_wrong_version(tmp_path: Path) -> None:
    path = _raw_shard(tmp_path / "version.bin", [SHARD_MAGIC, 2, 0])
    with pytest.raises(DataError, match=r"version\.bin has format version 2, expected 1"):
        validate_shard(path)


@pytest.mark.parametrize("delta", [-2, -1, 2])
def test_size_mismatch(tmp_path: Path, delta: int) -> None:
    path = tmp_path / "cut.bin"
    write_shard(path, np.arange(10))
    data = path.read_bytes()
    path.write_bytes(data[:delta] if delta < 0 else data + b"\0" * delta)
    with pytest.raises(
        DataError,
        match=rf"cut\.bin is {len(data) + delta} bytes but its header declares 10 tokens \({len(data)} bytes\)",
    ):
        read_num_tokens(path)


def test_validate_names_first_out_of_vocab_token(tmp_path: Path) -> None:
    path = tmp_path / "v.bin"
    write_shard(path, np.array([1, 5, 1023, 1024, 2000, 3]))
    assert validate_shard(path, vocab_size=2001) == 6
    with pytest.raises(DataError, match=r"token id 1024 at position 3 is >= vocab_size 1024"):
        validate_shard(path, vocab_size=1024)
    with pytest.raises(DataError, match=r"token id 1024 at position 3"):
        validate_shard(path, vocab_size=1024, chunk=2)  # found across chunk boundaries too


def test_list_shards_sorted_and_excludes_byte_sidecars(tmp_path: Path) -> None:
    for name in [
        "fineweb_val_000001.bin",
        "fineweb_val_000000.bin",
        "fineweb_val_bytes_000000.bin",
        "fineweb_train_000000.bin",
        "other.bin",
    ]:
        write_shard(tmp_path / name, np.arange(4))
    assert [p.name for p in list_shards(tmp_path, "val")] == ["fineweb_val_000000.bin", "fineweb_val_000001.bin"]
    assert [p.name for p in list_shards(tmp_path, "train")] == ["fineweb_train_000000.bin"]


def test_list_shards_missing_dir_and_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope does not exist: run `pgolf data build` or `pgolf data download`"):
        list_shards(tmp_path / "nope", "train")
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", np.arange(4))
    with pytest.raises(DataError, match=r"no fineweb_val_\*\.bin shards in"):
        list_shards(tmp_path, "val")


@pytest.mark.parametrize(
    ("seq_len", "max_tokens", "expected"),
    [
        (4, 0, 17),  # N=17: ((16)//4)*4+1
        (5, 0, 16),  # ((16)//5)*5+1
        (16, 0, 17),
        (3, 0, 16),
        (4, 6, 5),  # prefix of 7 tokens: ((6)//4)*4+1
        (2, 100, 17),  # prefix longer than the data
    ],
)
def test_load_val_tokens_trims_like_baseline(tmp_path: Path, seq_len: int, max_tokens: int, expected: int) -> None:
    first, second = np.arange(100, 110), np.arange(200, 207)
    write_shard(tmp_path / "fineweb_val_000000.bin", first)
    write_shard(tmp_path / "fineweb_val_000001.bin", second)
    write_shard(tmp_path / "fineweb_val_bytes_000000.bin", np.full(50, 9))  # must be ignored
    tokens = load_val_tokens(tmp_path, seq_len, max_tokens)
    assert tokens.dtype == torch.int64 and tokens.ndim == 1
    assert tokens.numel() == expected
    assert tokens.tolist() == np.concatenate([first, second])[:expected].tolist()


def test_load_val_tokens_too_short(tmp_path: Path) -> None:
    write_shard(tmp_path / "fineweb_val_000000.bin", np.arange(8))
    with pytest.raises(DataError, match=r"has 8 tokens, too few for one sequence of seq_len=8"):
        load_val_tokens(tmp_path, 8)
