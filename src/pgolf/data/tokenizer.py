"""SentencePiece tokenizers: load, train, and the per-token byte tables behind val_bpb.

The byte tables follow TECHNIQUES §2.2 exactly. A table must say how many *source* bytes a token
stands for (a byte-fallback token is always 1 byte), never `len(decode(token).encode())` (pitfall P2).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import sentencepiece as spm
import torch

from pgolf.errors import DataError
from pgolf.utils import atomic_write_bytes, atomic_write_text

SPACE_PIECE = "\u2581"  # "▁", SentencePiece's whitespace marker
# The CaseOps operators (`pgolf.data.caseops`): a model that keeps all four as pieces is a CaseOps tokenizer.
TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)

# Trainer settings of the official data pipeline (TECHNIQUES §1.2).
OFFICIAL_TRAINER_SETTINGS: dict[str, Any] = {
    "character_coverage": 0.999,
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    "pad_id": 0,
    "bos_id": 1,
    "eos_id": 2,
    "unk_id": 3,
    "hard_vocab_limit": False,
}


def load_sentencepiece(path: str | os.PathLike[str]) -> spm.SentencePieceProcessor:
    """Load a `.model` file, turning every failure into a DataError that names the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"tokenizer {path} does not exist: pass the path of a SentencePiece .model file")
    if path.suffix != ".model":
        raise DataError(f"tokenizer {path} is not a .model file: pass the SentencePiece .model (not the .vocab)")
    processor = spm.SentencePieceProcessor()
    try:
        processor.load(str(path))
    except (RuntimeError, OSError) as exc:
        raise DataError(
            f"tokenizer {path} could not be parsed as a SentencePiece model ({exc}): re-download or retrain it"
        ) from exc
    return processor


def operator_ids(sp: spm.SentencePieceProcessor, required: bool = True) -> dict[str, int]:
    """{operator: id} when all four operators are pieces `sp` always keeps whole, else {} (or an error).

    User-defined symbols are never merged with neighbours, so each operator must come out of
    encoding as its own piece between letters and next to another operator.
    """
    ids = {op: sp.piece_to_id(op) for op in OPERATORS}
    if all(i != sp.unk_id() and sp.encode(f"a{op}b{op}{op}").count(i) == 3 for op, i in ids.items()):
        return ids
    if required:
        raise DataError(
            "tokenizer lacks the CaseOps operators U+E001..U+E004 as user-defined pieces: train it with "
            "`pgolf data build --caseops`"
        )
    return {}


def check_vocab_size(sp: spm.SentencePieceProcessor | int, vocab_size: int, *, name: str = "") -> None:
    """Refuse a model vocabulary that differs from the tokenizer's (`sp` or its size; the baseline does the same)."""
    actual = sp if isinstance(sp, int) else int(sp.vocab_size())
    if actual != vocab_size:
        label = f"tokenizer {name}" if name else "tokenizer"
        raise DataError(
            f"VOCAB_SIZE={vocab_size} (model.vocab_size) does not match {label} vocab_size={actual}: "
            f"set model.vocab_size to {actual}"
        )


def assert_space_piece(sp: spm.SentencePieceProcessor) -> None:
    """Pitfall P1: without a standalone `▁` piece a lone space becomes 3 byte tokens worth 3 bytes."""
    if sp.piece_to_id(SPACE_PIECE) == sp.unk_id():
        raise DataError(
            "tokenizer has no standalone '▁' piece, so a lone space would be counted as 3 bytes "
            "(pitfall P1): retrain it with pgolf (train_sentencepiece adds the piece)"
        )


class ByteCounter(Protocol):
    """Bytes credited to scored targets: a ByteLUT, or a per-position sidecar (which needs the positions)."""

    def token_bytes(self, prev_ids: torch.Tensor, target_ids: torch.Tensor,
                    target_positions: torch.Tensor | None = None) -> torch.Tensor: ...

    def to(self, device: torch.device | str) -> ByteCounter: ...


@dataclass(frozen=True)
class ByteLUT:
    """Per-token byte tables of TECHNIQUES §2.2, indexed by token id (length max(sp vocab, V))."""

    base_bytes: torch.Tensor  # int16: UTF-8 bytes of the piece without its leading ▁
    has_leading_space: torch.Tensor  # bool: the piece starts with ▁ (worth one space byte)
    is_boundary: torch.Tensor  # bool: control/unknown/unused ids; no space byte after them

    def token_bytes(self, prev_ids: torch.Tensor, target_ids: torch.Tensor,
                    target_positions: torch.Tensor | None = None) -> torch.Tensor:
        """Bytes credited to each target given the token before it: base[y] + (lead[y] & ~boundary[x]).

        `target_positions` is accepted for the ByteCounter interface and not needed here.
        """
        space = self.has_leading_space[target_ids] & ~self.is_boundary[prev_ids]
        return self.base_bytes[target_ids].to(torch.int64) + space.to(torch.int64)

    def to(self, device: torch.device | str) -> ByteLUT:
        return ByteLUT(
            base_bytes=self.base_bytes.to(device),
            has_leading_space=self.has_leading_space.to(device),
            is_boundary=self.is_boundary.to(device),
        )

    def __len__(self) -> int:
        return int(self.base_bytes.numel())


def build_byte_lut(sp: spm.SentencePieceProcessor, vocab_size: int) -> ByteLUT:
    """Build the byte tables for `sp`, padded to `vocab_size` with zero-byte boundary entries."""
    assert_space_piece(sp)
    base, lead, boundary = lut_arrays(sp)
    table_size = max(base.size, vocab_size)
    padded = (np.zeros(table_size, np.int16), np.zeros(table_size, np.bool_), np.ones(table_size, np.bool_))
    for full, part in zip(padded, (base, lead, boundary), strict=True):
        full[: part.size] = part
    return ByteLUT(*(torch.from_numpy(t) for t in padded))


def lut_arrays(sp: spm.SentencePieceProcessor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(base_bytes int64, has_leading_space, is_boundary) of every id of `sp`, by the §2.2 rule."""
    sp_vocab = int(sp.vocab_size())
    base = np.zeros(sp_vocab, dtype=np.int64)
    lead = np.zeros(sp_vocab, dtype=np.bool_)
    boundary = np.ones(sp_vocab, dtype=np.bool_)
    for token_id in range(sp_vocab):
        if sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id):
            continue
        boundary[token_id] = False
        if sp.is_byte(token_id):
            base[token_id] = 1
            continue
        piece = sp.id_to_piece(token_id)
        if piece.startswith(SPACE_PIECE):
            lead[token_id] = True
            piece = piece[1:]
        base[token_id] = len(piece.encode("utf-8"))
    return base, lead, boundary


def training_lines(texts: Iterable[str]) -> Iterator[str]:
    """Documents as the official pipeline feeds them to the trainer: NUL→space, stripped, no empties."""
    for text in texts:
        line = text.replace("\x00", " ").strip()
        if line:
            yield line


def train_sentencepiece(
    texts: Iterable[str],
    vocab_size: int,
    model_path: str | os.PathLike[str],
    model_type: str = "bpe",
    user_symbols: tuple[str, ...] = (),
) -> Path:
    """Train a SentencePiece model with the official settings; write `.model` and `.vocab` atomically.

    The result is reproducible byte for byte: the trainer runs on one thread and the model is
    serialized without a model_prefix (which would embed a temporary path). If the corpus yields no
    standalone `▁` piece, training is repeated with `▁` as a user-defined symbol so pitfall P1
    cannot occur. `user_symbols` are always single pieces (CaseOps operators); `model_type` is
    `bpe` (the official choice) or `unigram`.
    """
    model_path = Path(model_path)
    if model_path.suffix != ".model":
        raise DataError(f"tokenizer output {model_path} must end in .model: choose a name like fineweb_1024_bpe.model")
    corpus = _spill_lines(texts, model_path.parent)
    try:
        proto = _train_proto(corpus, vocab_size, model_type, user_symbols=user_symbols)
        trained = _load_proto(proto)
        if trained.piece_to_id(SPACE_PIECE) == trained.unk_id():
            proto = _train_proto(corpus, vocab_size, model_type, user_symbols=(*user_symbols, SPACE_PIECE))
            trained = _load_proto(proto)
    finally:
        os.unlink(corpus)
    atomic_write_text(model_path.with_suffix(".vocab"), vocab_text(trained))
    atomic_write_bytes(model_path, proto)
    return model_path


def vocab_text(sp: spm.SentencePieceProcessor) -> str:
    """The `.vocab` file SentencePiece writes: `piece<TAB>score` per line (C++ default float format)."""
    return "".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n" for i in range(sp.vocab_size()))


def _spill_lines(texts: Iterable[str], folder: Path) -> str:
    """Write training lines to a temporary JSON-lines file so training can run twice.

    Each document stays one trainer "sentence" (newlines included), as with the official
    sentence iterator; JSON escaping keeps its newlines from splitting it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix=".spm-train.", suffix=".jsonl", dir=folder)
    count = 0
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        for line in training_lines(texts):
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
    if count == 0:
        os.unlink(path)
        raise DataError("no non-empty training text for the tokenizer: give documents with some text")
    return path


def _read_spilled(corpus: str) -> Iterator[str]:
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _train_proto(corpus: str, vocab_size: int, model_type: str, user_symbols: tuple[str, ...]) -> bytes:
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_read_spilled(corpus),
            model_writer=buffer,
            model_type=model_type,
            vocab_size=vocab_size,
            num_threads=1,
            user_defined_symbols=list(user_symbols),
            minloglevel=2,
            **OFFICIAL_TRAINER_SETTINGS,
        )
    except RuntimeError as exc:
        raise DataError(f"SentencePiece training failed ({exc}): check vocab_size={vocab_size} and the corpus") from exc
    return buffer.getvalue()


def _load_proto(proto: bytes) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_proto=proto)
