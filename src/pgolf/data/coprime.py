"""The coprime-stride multi-shard loader of the records (TECHNIQUES §4.23, `data.loader = "coprime"`).

* A 64-bit FNV-1a hash of the sorted shard names seeds one PCG64 generator shared by all ranks, so
  every rank computes the same schedule; the run's seed is not mixed in (data order is fixed).
* Per shard: a random phase in [0, seq_len), `n` whole windows of `seq_len + 1` tokens after it (a
  window starts every `seq_len` tokens), a random start and a stride coprime to `n`. Windows are
  visited `start, start + stride, …  (mod n)`: a full permutation without storing one. An exhausted
  shard is planned anew.
* Each call mixes k shards, k growing linearly from 8 to 32 over the first 1,800 calls; shards are
  drawn without replacement with probability ∝ remaining_windows^α, α = 0.9 − 0.4·progress; each gets
  one window plus a multinomial share of the rest. Windows are shuffled within each shard, interleaved
  across shards, and rank r keeps `windows[r::world_size]`.

Only the chosen windows are copied out of the memory-mapped shards. The state (call count, generator
state, per-shard plans) is plain ints and strings, so a resumed run draws the same next batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgolf.data.loader import local_tokens, to_device
from pgolf.data.shards import open_shard, read_num_tokens
from pgolf.errors import DataError

MIN_SHARDS, MAX_SHARDS, RAMP_CALLS = 8, 32, 1800
ALPHA_START, ALPHA_DROP = 0.9, 0.4
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 1099511628211


def fnv1a64(data: bytes) -> int:
    value = FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return value


class CoprimeStrideLoader:
    """Per-rank batches of windows drawn from several shards at once, identical schedule on every rank."""

    def __init__(self, files: Sequence[str | os.PathLike[str]], rank: int, world_size: int,
                 device: torch.device | str = "cpu") -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        self.files = sorted(Path(f) for f in files)
        if not self.files:
            raise DataError("no train shards given: run `pgolf data build` or `pgolf data download` first")
        self.rank, self.world_size, self.device = rank, world_size, torch.device(device)
        self.sizes = [read_num_tokens(f) for f in self.files]
        seed = fnv1a64("\n".join(f.name for f in self.files).encode())
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self.calls = 0
        self.seq_len = 0
        self.plans: list[list[int] | None] = [None] * len(self.files)  # [phase, n, start, stride, used]
        self._tokens: dict[int, np.ndarray] = {}

    # ---- schedule ----------------------------------------------------------------------------------
    def _new_plan(self, shard: int) -> list[int] | None:
        phases = min(self.seq_len, self.sizes[shard] - self.seq_len)  # every phase leaves ≥ 1 window
        if phases <= 0:
            return None
        phase = int(self.rng.integers(phases))
        n = (self.sizes[shard] - phase - 1) // self.seq_len
        stride = 1
        if n > 2:
            stride = int(self.rng.integers(1, n))
            while math.gcd(stride, n) != 1:
                stride = int(self.rng.integers(1, n))
        return [phase, n, int(self.rng.integers(n)), stride, 0]

    def _remaining(self) -> np.ndarray:
        for shard, plan in enumerate(self.plans):
            if plan is None or plan[4] >= plan[1]:
                self.plans[shard] = self._new_plan(shard)
        return np.array([0 if p is None else p[1] - p[4] for p in self.plans], dtype=np.float64)

    def _take_windows(self, shard: int, count: int) -> list[int]:
        """Start offsets of the next `count` windows of `shard`, planning it anew when it runs out."""
        starts: list[int] = []
        while len(starts) < count:
            plan = self.plans[shard]
            if plan is None or plan[4] >= plan[1]:
                plan = self.plans[shard] = self._new_plan(shard)
                assert plan is not None  # chosen shards hold ≥ seq_len + 1 tokens, so every plan has windows
            phase, n, start, stride, used = plan
            take = min(count - len(starts), n - used)
            index = (start + stride * np.arange(used, used + take, dtype=np.int64)) % n
            starts.extend((phase + index * self.seq_len).tolist())
            plan[4] += take
        return starts

    def _schedule(self, windows: int) -> list[tuple[int, int]]:
        """(shard, start) of every window of this call, in global order."""
        remaining = self._remaining()
        usable = np.flatnonzero(remaining > 0)
        if usable.size == 0:
            raise DataError(f"no train shard holds a window of {self.seq_len + 1} tokens: use a shorter "
                            "train_seq_len or more data")
        progress = min(self.calls / RAMP_CALLS, 1.0)
        k = min(usable.size, windows, round(MIN_SHARDS + (MAX_SHARDS - MIN_SHARDS) * progress))
        weights = remaining[usable] ** (ALPHA_START - ALPHA_DROP * progress)
        chosen = self.rng.choice(usable, size=k, replace=False, p=weights / weights.sum())
        share = remaining[chosen] / remaining[chosen].sum()
        counts = 1 + self.rng.multinomial(windows - k, share)
        buckets = []
        for shard, count in zip(chosen.tolist(), counts.tolist(), strict=True):
            starts = self._take_windows(shard, count)
            buckets.append([(shard, starts[i]) for i in self.rng.permutation(count)])
        return [bucket[i] for i in range(max(counts)) for bucket in buckets if i < len(bucket)]

    # ---- batches -----------------------------------------------------------------------------------
    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = local_tokens(global_tokens, seq_len, self.world_size, grad_accum_steps) // seq_len
        if self.seq_len != seq_len:
            if self.seq_len:
                raise DataError(f"the coprime loader was planned for seq_len {self.seq_len}, now asked for {seq_len}: "
                                "keep train_seq_len fixed during a run")
            self.seq_len = seq_len
        schedule = self._schedule(rows * self.world_size)
        self.calls += 1
        out = np.empty((rows, seq_len + 1), dtype=np.uint16)
        for row, (shard, start) in enumerate(schedule[self.rank :: self.world_size]):
            out[row] = self._shard(shard)[start : start + seq_len + 1]
        return to_device(out, self.device)

    def _shard(self, shard: int) -> np.ndarray:
        if shard not in self._tokens:
            self._tokens[shard] = open_shard(self.files[shard])
        return self._tokens[shard]

    # ---- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        bits = self.rng.bit_generator.state
        return {
            "mode": "coprime", "files": [f.name for f in self.files], "calls": self.calls, "seq_len": self.seq_len,
            "plans": [None if p is None else list(p) for p in self.plans],
            # 128-bit generator words as decimal strings: checkpoints hold only plain values
            "rng": {"state": str(bits["state"]["state"]), "inc": str(bits["state"]["inc"]),
                    "has_uint32": int(bits["has_uint32"]), "uinteger": int(bits["uinteger"])},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("mode") != "coprime":
            raise DataError(f"loader state was saved by the {state.get('mode', 'stream')!r} loader but this run "
                            "uses 'coprime': resume with the data.loader the run started with")
        names = [f.name for f in self.files]
        if state.get("files") != names:
            raise DataError(f"loader state was saved for shards {state.get('files')} but this run has {names}: "
                            "resume with the same dataset and number of train shards")
        rng = state["rng"]
        self.rng.bit_generator.state = {
            "bit_generator": "PCG64", "state": {"state": int(rng["state"]), "inc": int(rng["inc"])},
            "has_uint32": int(rng["has_uint32"]), "uinteger": int(rng["uinteger"])}
        self.calls, self.seq_len = int(state["calls"]), int(state["seq_len"])
        self.plans = [None if p is None else [int(v) for v in p] for p in state["plans"]]

