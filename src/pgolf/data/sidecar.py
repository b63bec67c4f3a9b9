"""Byte counts for evaluation: the LUT of §2.2, or a per-token byte sidecar (TECHNIQUES §4.24).

A sidecar holds, for every val token, the source bytes it stands for (CaseOps: bytes of the original,
untransformed text). When a dataset has one, evaluation uses only the sidecar (pitfall P3: never
mix); a dataset that promises one but lacks its files is refused rather than scored with the LUT.
Only runs on a dataset with a sidecar import this module (`resolve.eval_byte_counter`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pgolf.data.shards import SIDECAR_MARKER, list_shards, open_shard, read_num_tokens
from pgolf.errors import DataError


class SidecarBytes:
    """Per-position byte counts of the val stream: the target at stream position p is worth `bytes[p]`."""

    def __init__(self, counts: torch.Tensor) -> None:
        self.counts = counts

    def token_bytes(self, prev_ids: torch.Tensor, target_ids: torch.Tensor,
                    target_positions: torch.Tensor | None = None) -> torch.Tensor:
        if target_positions is None:
            raise DataError("this dataset is scored with a byte sidecar, so the evaluator must pass target "
                            "positions; this evaluation path does not support sidecars yet")
        return self.counts[target_positions.reshape(-1).to(self.counts.device)].to(torch.int64)

    def to(self, device: torch.device | str) -> SidecarBytes:
        return SidecarBytes(self.counts.to(device))

    def __len__(self) -> int:
        return int(self.counts.numel())


def sidecar_files(dataset_dir: Path) -> list[Path]:
    return sorted(Path(dataset_dir).glob(f"fineweb_val{SIDECAR_MARKER}*.bin"))


def load_val_sidecar(dataset_dir: Path, num_tokens: int) -> SidecarBytes:
    """The first `num_tokens` sidecar entries, checked to align 1:1 with the val token shards."""
    files = sidecar_files(dataset_dir)
    token_files = list_shards(dataset_dir, "val")
    sizes = [read_num_tokens(f) for f in files]
    expected = [read_num_tokens(f) for f in token_files]
    if not files or sizes != expected:
        raise DataError(
            f"{dataset_dir}: the val byte sidecar (fineweb_val_bytes_*.bin, {sizes}) does not align with the val "
            f"shards ({expected}): bpb cannot be counted on the original bytes; rebuild the dataset"
        )
    counts = np.concatenate([np.asarray(open_shard(f)) for f in files])[:num_tokens]
    return SidecarBytes(torch.from_numpy(counts.astype(np.int64)))
