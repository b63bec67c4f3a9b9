"""Tokenizer families behind one interface: SentencePiece, CaseOps SentencePiece, byte260, tiktoken.

Every family speaks pgolf's shard convention: ids fit in uint16, id 1 is BOS and ids 0..3 are
special (pad, BOS, EOS, unk). Every family also says how many *source bytes* each token of a
document stands for (`token_bytes`), which is what val_bpb divides by, and how to decode ids back to
bytes (`decode_bytes`), which is what `pgolf data audit` checks that count against.

A tokenizer is named by a spec string: a SentencePiece `.model` path (a model whose vocabulary holds
the four CaseOps operators is loaded as CaseOps), `byte260`, `tiktoken:<encoding>`, or a `.json`
spec file written by `pgolf data build` (`{"family": "byte260"}` or `{"family": "tiktoken", ...}`).
TokenMonster vocabularies are refused with the reason (the package cannot run offline).

SentencePiece lives here; the other families each have a module that `load_tokenizer` imports only for
their spec (`byte260`, `tiktoken_bpe`, `caseops`), so a run ships only the family its tokenizer needs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sentencepiece as spm
import torch

from pgolf.data.tokenizer import SPACE_PIECE, ByteLUT, load_sentencepiece, lut_arrays, operator_ids
from pgolf.errors import DataError
from pgolf.utils import atomic_write_bytes, atomic_write_json, read_json

BOS_ID = 1
NUM_SPECIAL = 4  # pad, bos, eos, unk: the ids below every family's own tokens
MAX_SHARD_VOCAB = 65_536  # uint16 shards hold ids 0..65,535
SPEC_FORMAT = "pgolf-tokenizer-v1"
BYTE260 = "byte260"
TIKTOKEN_PREFIX = "tiktoken:"
TOKENMONSTER_PREFIX = "tokenmonster:"


class Tokenizer(Protocol):
    """What the data pipeline, the audit and the evaluator need from any tokenizer."""

    name: str
    variant: str  # names datasets: sp1024, sp8192_caseops, byte260, tiktoken_gpt2
    vocab_size: int
    needs_sidecar: bool  # True: bytes depend on context beyond the previous token (CaseOps)

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        """Token ids of each text (no BOS)."""
        ...

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The UTF-8 bytes the decoder produces for a document's ids (no BOS)."""
        ...

    def token_bytes(self, ids: np.ndarray) -> np.ndarray:
        """Source bytes credited to each token of a stream that starts with BOS (entry 0 is the BOS: 0)."""
        ...

    def byte_lut(self, vocab_size: int) -> ByteLUT:
        """The per-token tables of TECHNIQUES §2.2; raises for families that need a byte sidecar."""
        ...

    def byte_fallback_ids(self) -> dict[int, int]:
        """{byte value: id} of byte-fallback tokens whose lone decode is not the byte itself."""
        ...

    def save(self, folder: Path) -> Path:
        """Write the tokenizer's file(s) into `folder`; return the file that names it."""
        ...


class TableBytes:
    """`token_bytes` from the §2.2 rule: base[y] + (lead[y] and not boundary[previous])."""

    base: np.ndarray
    lead: np.ndarray
    boundary: np.ndarray

    def token_bytes(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.size, dtype=np.int64)
        if ids.size > 1:
            prev, target = ids[:-1], ids[1:]
            out[1:] = self.base[target] + (self.lead[target] & ~self.boundary[prev])
        return out

    def byte_lut(self, vocab_size: int) -> ByteLUT:
        size = max(len(self.base), vocab_size)
        base = np.zeros(size, dtype=np.int16)
        lead = np.zeros(size, dtype=np.bool_)
        boundary = np.ones(size, dtype=np.bool_)
        base[: len(self.base)], lead[: len(self.base)], boundary[: len(self.base)] = self.base, self.lead, self.boundary
        return ByteLUT(torch.from_numpy(base), torch.from_numpy(lead), torch.from_numpy(boundary))


class SentencePieceTokenizer(TableBytes):
    """A SentencePiece `.model`; bytes follow the official LUT (or an explicit table, for audits)."""

    needs_sidecar = False

    def __init__(self, path: Path, sp: spm.SentencePieceProcessor | None = None,
                 tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.path = Path(path)
        self.sp = sp if sp is not None else load_sentencepiece(path)
        self.name = self.path.name
        self.vocab_size = int(self.sp.vocab_size())
        self.variant = f"sp{self.vocab_size}"
        self.base, self.lead, self.boundary = tables if tables is not None else lut_arrays(self.sp)

    def encode_batch(self, texts: Sequence[str], threads: int = 1) -> list[list[int]]:
        return self.sp.encode(list(texts), out_type=int, num_threads=max(threads, 1))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.sp.decode([int(i) for i in ids]).encode("utf-8")

    def byte_fallback_ids(self) -> dict[int, int]:
        return {int(self.sp.id_to_piece(i)[3:5], 16): i for i in range(self.vocab_size) if self.sp.is_byte(i)}

    def has_space_piece(self) -> bool:
        return self.sp.piece_to_id(SPACE_PIECE) != self.sp.unk_id()

    def save(self, folder: Path) -> Path:
        target = folder / self.path.name
        for suffix in (".model", ".vocab"):
            src, dst = self.path.with_suffix(suffix), target.with_suffix(suffix)
            if src.is_file() and not (dst.exists() and os.path.samefile(src, dst)):
                atomic_write_bytes(dst, src.read_bytes())
        return target


def write_spec(path: Path, fields: dict[str, Any]) -> Path:
    atomic_write_json(path, {"format": SPEC_FORMAT, **fields})
    return path


def load_tokenizer(spec: str | os.PathLike[str]) -> Tokenizer:
    """The tokenizer named by `spec` (see the module docstring)."""
    text = os.fspath(spec)
    if text == BYTE260:
        from pgolf.data.byte260 import Byte260Tokenizer
        return Byte260Tokenizer()
    if text.startswith(TIKTOKEN_PREFIX):
        from pgolf.data.tiktoken_bpe import load_tiktoken
        return load_tiktoken(text[len(TIKTOKEN_PREFIX):])
    if text.startswith(TOKENMONSTER_PREFIX):
        raise DataError(
            f"{text}: TokenMonster vocabularies are not supported: the tokenmonster package downloads its "
            "tokenmonsterserver binary at first use and cannot run offline; convert the vocabulary or use a "
            "SentencePiece tokenizer"
        )
    path = Path(text)
    if path.suffix == ".json":
        return _load_spec_file(path)
    sp = load_sentencepiece(path)
    if operator_ids(sp, required=False):
        from pgolf.data.caseops import CaseOpsTokenizer
        return CaseOpsTokenizer(path, sp)
    return SentencePieceTokenizer(path, sp)


def spec_family(spec: str) -> str | None:
    """The family `spec` names, from the string alone: byte260, tiktoken, tokenmonster or sentencepiece
    (CaseOps or not: that is in the model file); None when the string does not say: a `.json` spec file,
    or the dataset's own tokenizer (`auto`, "", `embedded:…`)."""
    if spec in ("", "auto") or spec.startswith("embedded:") or spec.endswith(".json"):
        return None
    if spec == BYTE260:
        return BYTE260
    if spec.startswith((TIKTOKEN_PREFIX, TOKENMONSTER_PREFIX)):
        return spec.split(":", 1)[0]
    return "sentencepiece"


def may_be_caseops(spec: str) -> bool:
    """Whether `spec` can load as CaseOps: a SentencePiece model with the operators, or one not readable here."""
    if spec_family(spec) not in ("sentencepiece", None):
        return False
    try:
        return bool(operator_ids(load_sentencepiece(spec), required=False))
    except DataError:
        return True


def _load_spec_file(path: Path) -> Tokenizer:
    if not path.is_file():
        raise DataError(f"tokenizer {path} does not exist: pass a .model file, byte260, or a tokenizer .json")
    fields = read_json(path, "rewrite the tokenizer spec or rebuild the dataset")
    family = fields.get("family") if isinstance(fields, dict) else None
    if family == BYTE260:
        from pgolf.data.byte260 import Byte260Tokenizer
        return Byte260Tokenizer()
    if family == "tiktoken" and isinstance(fields.get("encoding"), str):
        from pgolf.data.tiktoken_bpe import load_tiktoken
        return load_tiktoken(fields["encoding"])
    raise DataError(f'tokenizer spec {path} has no known "family" (byte260, tiktoken): rebuild the dataset')


def check_shard_vocab(tok: Tokenizer) -> None:
    """Shards store uint16 ids and reserve id 1 for BOS."""
    if tok.vocab_size > MAX_SHARD_VOCAB:
        raise DataError(
            f"tokenizer {tok.name} has {tok.vocab_size:,} ids, more than the {MAX_SHARD_VOCAB:,} "
            f"(ids 0..{MAX_SHARD_VOCAB - 1:,}) that uint16 .bin shards hold: use a vocabulary of at most 65,536"
        )
    if isinstance(tok, SentencePieceTokenizer) and tok.sp.bos_id() != BOS_ID:
        raise DataError(
            f"tokenizer {tok.name} has bos_id={tok.sp.bos_id()}: shards need BOS id {BOS_ID}; retrain with bos_id=1"
        )

