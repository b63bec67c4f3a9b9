"""The official pure-byte tokenizer (`byte260`); only runs on it import this module."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgolf.data.families import BYTE260, NUM_SPECIAL, TableBytes, write_spec


class Byte260Tokenizer(TableBytes):
    """The official pure-byte tokenizer: pad 0, BOS 1, EOS 2, unk 3, byte b at id 4 + b."""

    needs_sidecar = False
    name = variant = BYTE260
    vocab_size = NUM_SPECIAL + 256

    def __init__(self) -> None:
        self.base = np.r_[np.zeros(NUM_SPECIAL, np.int64), np.ones(256, np.int64)]
        self.lead = np.zeros(self.vocab_size, dtype=np.bool_)
        self.boundary = np.r_[np.ones(NUM_SPECIAL, np.bool_), np.zeros(256, np.bool_)]

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        return [(np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) + NUM_SPECIAL).tolist()
                for t in texts]

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return bytes(int(i) - NUM_SPECIAL for i in ids if int(i) >= NUM_SPECIAL)

    def byte_fallback_ids(self) -> dict[int, int]:
        return {}  # a lone byte token decodes to exactly its byte

    def save(self, folder: Path) -> Path:
        return write_spec(folder / f"{BYTE260}.json", {"family": BYTE260})
