"""tiktoken byte-level BPEs (`tiktoken:<encoding>`); only runs on one import this module."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pgolf.data.families import NUM_SPECIAL, TIKTOKEN_PREFIX, TableBytes, write_spec
from pgolf.errors import DataError


class TiktokenTokenizer(TableBytes):
    """A tiktoken byte-level BPE (`tiktoken.Encoding`); ids are shifted up by 4 so 0..3 stay pad/BOS/EOS/unk.

    Each token's bytes are exactly `decode_single_token_bytes`, and no token carries a space marker.
    Encodings come from tiktoken's own cache (`TIKTOKEN_CACHE_DIR`): tiktoken downloads them on first
    use and ships none, so offline they must already be there.
    """

    needs_sidecar = False

    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding
        self.encoding_name = encoding.name
        self.name = f"{TIKTOKEN_PREFIX}{encoding.name}"
        self.variant = "tiktoken_" + "".join(c if c.isalnum() else "_" for c in encoding.name)
        ordinary = self.encoding.n_vocab - len(self.encoding.special_tokens_set)
        self.vocab_size = NUM_SPECIAL + ordinary
        lengths = [len(self.encoding.decode_single_token_bytes(i)) for i in range(ordinary)]
        self.base = np.r_[np.zeros(NUM_SPECIAL, np.int64), np.asarray(lengths, np.int64)]
        self.lead = np.zeros(self.vocab_size, dtype=np.bool_)
        self.boundary = np.r_[np.ones(NUM_SPECIAL, np.bool_), np.zeros(ordinary, np.bool_)]

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        batches = self.encoding.encode_ordinary_batch(list(texts), num_threads=max(threads, 1))
        return [[i + NUM_SPECIAL for i in ids] for ids in batches]

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.encoding.decode_bytes([int(i) - NUM_SPECIAL for i in ids if int(i) >= NUM_SPECIAL])

    def byte_fallback_ids(self) -> dict[int, int]:
        return {}  # tiktoken decodes a lone byte token to its raw byte

    def save(self, folder: Path) -> Path:
        return write_spec(folder / f"{self.variant}.json", {"family": "tiktoken", "encoding": self.encoding_name})


def _tiktoken_encoding(name: str) -> Any:
    try:
        # tiktoken is optional (not a pgolf dependency), so a type check may run without it
        import tiktoken  # pyright: ignore[reportMissingImports]
    except ImportError:
        raise DataError(
            f"tokenizer tiktoken:{name} needs the tiktoken package: pip install tiktoken "
            "(and have the encoding in its cache, TIKTOKEN_CACHE_DIR, since tiktoken downloads encodings)"
        ) from None
    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:
        raise DataError(f"tiktoken has no encoding {name!r} ({exc}): "
                        f"choose one of {tiktoken.list_encoding_names()}") from None
    except Exception as exc:  # noqa: BLE001 - tiktoken raises network errors of several types
        raise DataError(
            f"tiktoken encoding {name!r} is not available offline ({type(exc).__name__}): tiktoken ships no "
            "encoding files and downloads them on first use; copy the cached file into TIKTOKEN_CACHE_DIR "
            "on this machine, or use a SentencePiece tokenizer"
        ) from None


def load_tiktoken(name: str) -> TiktokenTokenizer:
    """The tokenizer of tiktoken's encoding `name` (from tiktoken's cache: see `TiktokenTokenizer`)."""
    return TiktokenTokenizer(_tiktoken_encoding(name))
