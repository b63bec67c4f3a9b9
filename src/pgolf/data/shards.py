"""The official `.bin` token shard format (TECHNIQUES §1.4) and the validation token stream.

Layout: a 1024-byte header of 256 little-endian int32 (magic 20240520, version 1, num_tokens,
then zeros), followed by `num_tokens` little-endian uint16 token ids.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from pgolf.errors import DataError
from pgolf.utils import atomic_open

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_BYTES = 1024
HEADER_INTS = HEADER_BYTES // 4
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN_ID = 65535
SIDECAR_MARKER = "_bytes_"  # CaseOps byte sidecars share the glob but hold byte counts, not tokens

Split = Literal["train", "val"]
PathLike = str | os.PathLike[str]


def write_shard(path: PathLike, tokens: np.ndarray) -> None:
    """Write `tokens` (any integer array) as one shard, atomically."""
    array = np.asarray(tokens)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"shard {path}: tokens must be a 1-D integer array, got {array.dtype} with shape {array.shape}")
    if array.size >= 2**31:
        raise DataError(f"shard {path}: {array.size} tokens exceed the format's 2^31-1 limit: use smaller shards")
    if array.size:
        _check_id_range(path, array)
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[:3] = (SHARD_MAGIC, SHARD_VERSION, array.size)
    with atomic_open(path, "wb") as handle:
        handle.write(header.tobytes())
        handle.write(array.astype(TOKEN_DTYPE, copy=False).tobytes())


def _check_id_range(path: PathLike, array: np.ndarray) -> None:
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > MAX_TOKEN_ID:
        bad = low if low < 0 else high
        position = int(np.flatnonzero(array == bad)[0])
        raise DataError(
            f"shard {path}: token id {bad} at position {position} does not fit in uint16 (0..{MAX_TOKEN_ID}): "
            "the tokenizer's vocabulary is too large for the .bin format"
        )


def read_num_tokens(path: PathLike) -> int:
    """Validate the header and exact file size of a shard; return its token count."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"shard {path} does not exist: run `pgolf data build` or `pgolf data download`")
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise DataError(
            f"shard {path} is truncated: {size} bytes, shorter than the {HEADER_BYTES}-byte header: "
            "delete it and re-download or rebuild"
        )
    header = np.fromfile(path, dtype="<i4", count=HEADER_INTS)
    magic, version, num_tokens = (int(v) for v in header[:3])
    if magic != SHARD_MAGIC:
        raise DataError(
            f"shard {path} has magic {magic}, expected {SHARD_MAGIC}: it is not a parameter-golf token shard"
        )
    if version != SHARD_VERSION:
        raise DataError(
            f"shard {path} has format version {version}, expected {SHARD_VERSION}: rebuild it with `pgolf data build`"
        )
    expected = HEADER_BYTES + TOKEN_DTYPE.itemsize * num_tokens
    if num_tokens < 0 or size != expected:
        raise DataError(
            f"shard {path} is {size} bytes but its header declares {num_tokens} tokens ({expected} bytes): "
            "the file is truncated or corrupt; delete it and re-download or rebuild"
        )
    return num_tokens


def open_shard(path: PathLike) -> np.ndarray:
    """Memory-map the tokens of a validated shard (read-only uint16)."""
    num_tokens = read_num_tokens(path)
    if num_tokens == 0:  # mmap cannot map zero bytes
        return np.zeros(0, dtype=TOKEN_DTYPE)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r", offset=HEADER_BYTES, shape=(num_tokens,))


def validate_shard(path: PathLike, vocab_size: int | None = None, chunk: int = 1 << 24) -> int:
    """Full check: header, size and (with `vocab_size`) every token id < vocab_size. Returns num_tokens."""
    tokens = open_shard(path)
    if vocab_size is None:
        return int(tokens.size)
    for start in range(0, tokens.size, chunk):
        bad = np.flatnonzero(tokens[start : start + chunk] >= vocab_size)
        if bad.size:
            position = start + int(bad[0])
            raise DataError(
                f"shard {path}: token id {int(tokens[position])} at position {position} is >= vocab_size {vocab_size}: "
                "the shard was made with a larger tokenizer; use the matching tokenizer/vocab_size or rebuild"
            )
    return int(tokens.size)


def list_shards(dataset_dir: PathLike, split: Split) -> list[Path]:
    """Sorted `fineweb_{split}_*.bin` token shards of a dataset, excluding `_bytes_` sidecars."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    directory = Path(dataset_dir)
    if not directory.is_dir():
        raise DataError(
            f"dataset directory {directory} does not exist: run `pgolf data build` or `pgolf data download` first"
        )
    files = sorted(p for p in directory.glob(f"fineweb_{split}_*.bin") if SIDECAR_MARKER not in p.name)
    if not files:
        raise DataError(
            f"no fineweb_{split}_*.bin shards in {directory}: run `pgolf data build` or `pgolf data download` "
            "or point the data path at a dataset folder"
        )
    return files


def load_val_tokens(dataset_dir: PathLike, seq_len: int, max_tokens: int = 0) -> torch.Tensor:
    """All validation tokens as int64, trimmed like the baseline to `((N-1)//seq_len)*seq_len + 1`.

    `max_tokens > 0` keeps only the first `max_tokens + 1` tokens first: a declared prefix for quick
    diagnostic evaluations, never a submitted score.
    """
    if seq_len <= 0:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    limit = max_tokens + 1 if max_tokens > 0 else None
    tokens = _concat_shards(list_shards(dataset_dir, "val"), limit)
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise DataError(
            f"validation split in {dataset_dir} has {tokens.size} tokens, too few for one sequence of "
            f"seq_len={seq_len} plus one target: use a shorter seq_len or a larger val split"
        )
    return torch.from_numpy(tokens[: usable + 1].astype(np.int64))


def _concat_shards(files: list[Path], limit: int | None) -> np.ndarray:
    """Concatenate shard tokens, reading no more than `limit` tokens in total."""
    parts: list[np.ndarray] = []
    remaining = limit
    for path in files:
        tokens = open_shard(path)
        if remaining is not None:
            tokens = tokens[:remaining]
            remaining -= tokens.size
        parts.append(np.asarray(tokens))
        if remaining == 0:
            break
    return np.concatenate(parts) if parts else np.zeros(0, dtype=TOKEN_DTYPE)
