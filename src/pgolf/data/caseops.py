"""CaseOps: the lossless case transform of TECHNIQUES §4.24, applied to text before SentencePiece.

Maximal runs of ASCII letters are lowercased and their case is written as operator characters:
TITLE (U+E001) before a run whose first letter is the only capital (or that starts a mixed-case
run), ALLCAPS (U+E002) before an all-capital run of two or more letters, CAPNEXT (U+E003) before
each later capital of a mixed-case run. A literal operator character in the text is escaped with
ESC (U+E004). `decode(encode(t)) == t` for every string. Non-ASCII letters are left alone.

`CaseOpsTokenizer` is the family of SentencePiece models that hold the operators (`load_tokenizer` finds
them with `tokenizer.operator_ids`); only runs on such a tokenizer import this module.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from pgolf.data.families import SentencePieceTokenizer
from pgolf.data.tokenizer import ALLCAPS, CAPNEXT, ESC, OPERATORS, TITLE, ByteLUT, operator_ids
from pgolf.errors import DataError

_ENCODE_UNITS = re.compile("[A-Za-z]+|[\ue001-\ue004]")
_DECODE_UNITS = re.compile("\ue004(.)|\ue002([a-z]+)|[\ue001\ue003]([a-z])", re.DOTALL)


def _encode_unit(match: re.Match[str]) -> str:
    run = match.group()
    if run in OPERATORS:
        return ESC + run
    if run.islower():
        return run
    lower = run.lower()
    if len(run) >= 2 and run.isupper():
        return ALLCAPS + lower
    if run[0].isupper() and (len(run) == 1 or run[1:].islower()):
        return TITLE + lower
    head = (TITLE if run[0].isupper() else "") + lower[0]
    return head + "".join(CAPNEXT + low if ch.isupper() else low for ch, low in zip(run[1:], lower[1:], strict=True))


def _decode_unit(match: re.Match[str]) -> str:
    escaped, caps_run, one_letter = match.groups()
    if escaped is not None:
        return escaped
    if caps_run is not None:
        return caps_run.upper()
    return one_letter.upper()


def encode(text: str) -> str:
    """The transformed text that the CaseOps tokenizer is trained on and encodes."""
    return _ENCODE_UNITS.sub(_encode_unit, text)


def decode(text: str) -> str:
    """The original text of a transformed string (the exact inverse of `encode`)."""
    return _DECODE_UNITS.sub(_decode_unit, text)


class CaseOpsTokenizer(SentencePieceTokenizer):
    """SentencePiece trained on CaseOps-transformed text (TECHNIQUES §4.24).

    Operators are credited 0 bytes (an escaped one its own 3), so `token_bytes` counts the bytes of
    the original text. That count depends on more than the previous token, so evaluation must read a
    byte sidecar: `byte_lut` refuses (pitfall P3: never mix the LUT with a transformed tokenizer).
    """

    needs_sidecar = True

    def __init__(self, path: Path, sp: spm.SentencePieceProcessor | None = None) -> None:
        super().__init__(path, sp)
        self.variant = f"sp{self.vocab_size}_caseops"
        self.operator_ids = operator_ids(self.sp)
        self.escape_id = self.operator_ids[ESC]
        ops = list(self.operator_ids.values())
        self.base = self.base.copy()
        self.base[ops] = 0
        self.escaped_bytes = {i: len(c.encode("utf-8")) for c, i in self.operator_ids.items()}

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        return super().encode_batch([encode(t) for t in texts], threads)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return decode(self.sp.decode([int(i) for i in ids])).encode("utf-8")

    def token_bytes(self, ids: np.ndarray) -> np.ndarray:
        out = super().token_bytes(ids)
        ids = np.asarray(ids, dtype=np.int64)
        escaped = -1
        for position in np.flatnonzero(ids == self.escape_id):  # rare: only literal operator characters
            if position == escaped or position + 1 >= ids.size:
                continue
            escaped = int(position) + 1
            out[escaped] = self.escaped_bytes.get(int(ids[escaped]), out[escaped])
        return out

    def byte_lut(self, vocab_size: int) -> ByteLUT:
        raise DataError(
            f"tokenizer {self.name} is a CaseOps tokenizer: its bytes must come from the val byte sidecar "
            "(fineweb_val_bytes_*.bin), never from the LUT; rebuild the dataset with `pgolf data build --caseops`"
        )
