"""Training token streams, read from memory-mapped shards (TECHNIQUES §1.9, §4.23).

Three modes, built by `make_train_loader` from `data.loader`:

* `stream` (the baseline, exactly): every rank advances its own identical stream by
  `(local+1)·world_size` tokens and keeps the slice `[r·(local+1), (r+1)·(local+1))`. Only that
  slice is copied; the rest of the span is skipped without being read.
* `doc_aligned`: every sequence starts at a document's BOS; the stream then jumps to the first BOS
  after the sequence's last target (the rest of a cut document is not trained on).
* `coprime`: windows of `seq_len+1` tokens visited per shard in a coprime-stride permutation, several
  shards mixed in each batch (the records' loader; `coprime.py`).

Every mode's `state_dict()` is plain JSON-able values and restores the exact next batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from pgolf.data.shards import open_shard, read_num_tokens
from pgolf.errors import ConfigError, DataError


class TokenStream:
    """The sorted shards as one endless token sequence: shard 0 … shard n-1, then shard 0 again."""

    def __init__(self, files: Sequence[str | os.PathLike[str]]) -> None:
        self.files = sorted(Path(f) for f in files)
        if not self.files:
            raise DataError("no train shards given: run `pgolf data build` or `pgolf data download` first")
        self.sizes = [read_num_tokens(f) for f in self.files]
        if sum(self.sizes) == 0:
            raise DataError(f"the train shards ({self.files[0].parent}) hold no tokens: rebuild the dataset")
        self.file_index = 0
        self.position = 0
        self._tokens: np.ndarray | None = None
        self._found: tuple[int, int, np.ndarray] | None = None  # (file, token, positions) of the last seek

    def _current(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = open_shard(self.files[self.file_index])
        return self._tokens

    def _next_file(self) -> None:
        self.file_index = (self.file_index + 1) % len(self.files)
        self.position = 0
        self._tokens = None

    def _advance(self, n: int, out: np.ndarray | None) -> None:
        """Move `n` tokens forward, copying them into `out` when given."""
        filled = 0
        while filled < n:
            available = self.sizes[self.file_index] - self.position
            if available == 0:
                self._next_file()
                continue
            step = min(available, n - filled)
            if out is not None:
                out[filled : filled + step] = self._current()[self.position : self.position + step]
            self.position += step
            filled += step

    def take(self, n: int) -> np.ndarray:
        """The next `n` tokens (uint16), concatenated across shard boundaries."""
        out = np.empty(n, dtype=np.uint16)
        self._advance(n, out)
        return out

    def skip(self, n: int) -> None:
        """Advance by `n` tokens without reading them."""
        self._advance(n, None)

    def seek(self, token: int) -> None:
        """Advance to the next occurrence of `token` (the current position counts), wrapping around."""
        for _ in range(len(self.files) + 1):
            positions = self._positions(token)
            at = int(np.searchsorted(positions, self.position))
            if at < positions.size:
                self.position = int(positions[at])
                return
            self._next_file()
        raise DataError(f"the train shards ({self.files[0].parent}) hold no token {token}: document-aligned "
                        "loading needs BOS at every document start; rebuild the dataset with `pgolf data build`")

    def _positions(self, token: int) -> np.ndarray:
        if self._found is None or self._found[:2] != (self.file_index, token):
            self._found = (self.file_index, token, np.flatnonzero(self._current() == token))
        return self._found[2]

    def state_dict(self) -> dict[str, Any]:
        return {"file_index": self.file_index, "position": self.position, "files": [f.name for f in self.files]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = [f.name for f in self.files]
        if state.get("files") != names:
            raise DataError(
                f"loader state was saved for shards {state.get('files')} but this run has {names}: "
                "resume with the same dataset and number of train shards"
            )
        index, position = int(state["file_index"]), int(state["position"])
        if not (0 <= index < len(self.files) and 0 <= position <= self.sizes[index]):
            raise DataError(
                f"loader state (file {index}, position {position}) is outside the shards: the checkpoint is corrupt"
            )
        self.file_index, self.position, self._tokens = index, position, None


class TrainLoader(Protocol):
    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        ...

    def state_dict(self) -> dict[str, Any]:
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ...


def local_tokens(global_tokens: int, seq_len: int, world_size: int, grad_accum_steps: int) -> int:
    """Tokens per rank and micro-step; must be a positive multiple of `seq_len`."""
    local = global_tokens // (world_size * grad_accum_steps)
    if local <= 0 or local % seq_len:
        raise ConfigError(
            f"train_batch_tokens={global_tokens} / (world_size {world_size} × grad_accum_steps "
            f"{grad_accum_steps}) = {local} tokens per micro-batch, not a positive multiple of "
            f"train_seq_len={seq_len}: choose a batch size divisible by world_size·grad_accum·seq_len"
        )
    return local


def to_device(rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets (int64) from rows of `seq_len + 1` tokens."""
    rows_t = torch.from_numpy(rows.astype(np.int64))
    return _transfer(rows_t[:, :-1].contiguous(), rows_t[:, 1:].contiguous(), device)


def _transfer(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


class DistributedTokenLoader:
    """Per-rank batches from a shared token stream, exactly as the baseline's loader."""

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        rank: int,
        world_size: int,
        device: torch.device | str = "cpu",
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)
        self.stream = TokenStream(files)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets, int64 tensors of shape (local_tokens // seq_len, seq_len)."""
        span = local_tokens(global_tokens, seq_len, self.world_size, grad_accum_steps) + 1
        self.stream.skip(self.rank * span)
        chunk = torch.from_numpy(self.stream.take(span).astype(np.int64))
        self.stream.skip((self.world_size - self.rank - 1) * span)
        x = chunk[:-1].reshape(-1, seq_len)
        y = chunk[1:].reshape(-1, seq_len)
        return _transfer(x, y, self.device)

    def state_dict(self) -> dict[str, Any]:
        """The position of the shared stream; identical on every rank."""
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_mode(state, "stream")
        self.stream.load_state_dict(state)


class DocumentAlignedLoader:
    """Sequences that each start with a document's BOS; ranks take disjoint rows of each global batch."""

    def __init__(self, files: Sequence[str | os.PathLike[str]], rank: int, world_size: int,
                 device: torch.device | str = "cpu", bos_id: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.bos_id = bos_id
        self.stream = TokenStream(files)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = local_tokens(global_tokens, seq_len, self.world_size, grad_accum_steps) // seq_len
        out = np.empty((rows, seq_len + 1), dtype=np.uint16)
        for index in range(self.world_size * rows):
            self.stream.seek(self.bos_id)
            mine = index - self.rank * rows
            if 0 <= mine < rows:
                out[mine] = self.stream.take(seq_len + 1)
            else:
                self.stream.skip(seq_len + 1)
        return to_device(out, self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"mode": "doc_aligned", **self.stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_mode(state, "doc_aligned")
        self.stream.load_state_dict(state)


def _check_mode(state: dict[str, Any], mode: str) -> None:
    saved = state.get("mode", "stream")
    if saved != mode:
        raise DataError(f"loader state was saved by the {saved!r} loader but this run uses {mode!r}: "
                        f"resume with data.loader={saved}")


LOADER_MODES = ("stream", "doc_aligned", "coprime")


def make_train_loader(mode: str, files: Sequence[str | os.PathLike[str]], rank: int, world_size: int,
                      device: torch.device | str = "cpu") -> TrainLoader:
    """The training loader of `data.loader`."""
    if mode == "stream":
        return DistributedTokenLoader(files, rank, world_size, device)
    if mode == "doc_aligned":
        return DocumentAlignedLoader(files, rank, world_size, device)
    if mode == "coprime":
        from pgolf.data.coprime import CoprimeStrideLoader

        return CoprimeStrideLoader(files, rank, world_size, device)
    raise ConfigError(f"data.loader: must be one of {', '.join(LOADER_MODES)}, got {mode!r}")
