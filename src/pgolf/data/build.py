"""Text → tokenizer + official shards (`pgolf data build`), and the embedded sample dataset.

Export follows TECHNIQUES §1.3: each document is encoded raw, BOS (id 1) is prepended, no EOS,
documents straddle shards, and every shard but the last of a split holds exactly `shard_tokens`.
The val split is chosen per document before tokenization, like the official first-50k split.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sentencepiece as spm

from pgolf.data.shards import MAX_TOKEN_ID, write_shard
from pgolf.data.tokenizer import (
    assert_space_piece,
    check_vocab_size,
    load_sentencepiece,
    train_sentencepiece,
)
from pgolf.errors import DataError
from pgolf.utils import atomic_write_bytes, atomic_write_json, sha256_file

BOS_ID = 1
DEFAULT_VOCAB_SIZE = 1024
DEFAULT_VAL_FRACTION = 0.1
DATASET_FORMAT = "pgolf-dataset-v1"
ENCODE_BATCH_DOCS = 256
PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"
TOKENIZER_DIR = PACKAGE_DIR / "tokenizers"
EMBEDDED_TOKENIZERS = {
    "sp1024": TOKENIZER_DIR / "fineweb_1024_bpe.model",
    "sp8192": TOKENIZER_DIR / "fineweb_8192_bpe.model",
}
EMBEDDED_SHARD_TOKENS = 1_000_000  # several train shards, so multi-shard code paths get exercised

PathInput = str | os.PathLike[str]


@dataclass(frozen=True)
class DatasetPaths:
    """Where a dataset lives: its shard folder, its tokenizer model and the vocabulary size."""

    dataset_dir: Path
    tokenizer_path: Path
    vocab_size: int


# ---------------------------------------------------------------------------------------------
# Reading documents


def expand_inputs(patterns: Iterable[PathInput]) -> list[Path]:
    """Expand glob patterns and folders (their .jsonl/.txt files), sorted; keep plain paths as given."""
    files: list[Path] = []
    for pattern in patterns:
        files.extend(_expand_one(os.fspath(pattern)))
    if not files:
        raise DataError("no input files found: pass --input with .jsonl or .txt files (or a folder of them)")
    return files


def _expand_one(text: str) -> list[Path]:
    path = Path(text)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in _READERS)
    if path.exists() or not glob.has_magic(text):
        return [path]
    matches = sorted(glob.glob(text))
    if not matches:
        raise DataError(f"input pattern {text} matches no files: check the path or quote the glob")
    return [Path(m) for m in matches]


def read_documents(paths: Iterable[PathInput]) -> Iterator[str]:
    """Yield documents from `.jsonl` files (one {"text": ...} per line) and `.txt` files (one each).

    Decoding is strict UTF-8: a bad byte raises DataError naming the file and its byte offset.
    """
    count = 0
    for path in expand_inputs(paths):
        reader = _READERS.get(path.suffix.lower())
        if reader is None:
            raise DataError(f"input {path} has unsupported type {path.suffix!r}: use .jsonl or .txt files")
        if not path.is_file():
            raise DataError(f"input {path} does not exist: check the path")
        for text in reader(path):
            count += 1
            yield text
    if count == 0:
        raise DataError(
            'the corpus has no documents: give .jsonl files with {"text": ...} lines or non-empty .txt files'
        )


def _read_jsonl(path: Path) -> Iterator[str]:
    offset = 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = _decode(raw, path, offset)
            offset += len(raw)
            if line.strip():
                yield _jsonl_text(line, path, line_no)


def _jsonl_text(line: str, path: Path, line_no: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(
            f'{path} line {line_no} is not valid JSON ({exc.msg}): write one {{"text": ...}} object per line'
        ) from exc
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f'{path} line {line_no} has no string "text" field: write one {{"text": ...}} object per line')
    return record["text"]


def _read_txt(path: Path) -> Iterator[str]:
    yield _decode(path.read_bytes(), path, 0)


def _decode(raw: bytes, path: Path, base_offset: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8: bad byte 0x{raw[exc.start]:02x} at byte offset {base_offset + exc.start}: "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from exc


_READERS = {".jsonl": _read_jsonl, ".txt": _read_txt}


# ---------------------------------------------------------------------------------------------
# Shard export


@dataclass
class _SplitWriter:
    """Buffers one split's tokens and writes full shards of `shard_tokens` as they fill."""

    directory: Path
    split: str
    shard_tokens: int
    buffer: list[np.ndarray] = field(default_factory=list)
    buffered: int = 0
    shards: list[Path] = field(default_factory=list)
    docs: int = 0
    tokens: int = 0
    text_bytes: int = 0

    def add(self, ids: np.ndarray, text_bytes: int) -> None:
        self.buffer.append(ids)
        self.buffered += ids.size
        self.docs += 1
        self.tokens += ids.size
        self.text_bytes += text_bytes
        while self.buffered >= self.shard_tokens:
            self._write(self.shard_tokens)

    def close(self) -> None:
        if self.buffered:
            self._write(self.buffered)

    def _write(self, count: int) -> None:
        joined = np.concatenate(self.buffer)
        path = self.directory / f"fineweb_{self.split}_{len(self.shards):06d}.bin"
        write_shard(path, joined[:count])
        self.shards.append(path)
        rest = joined[count:]
        self.buffer = [rest] if rest.size else []
        self.buffered = int(rest.size)


def _encode_split(sp: spm.SentencePieceProcessor, docs: Iterable[str], writer: _SplitWriter, vocab_size: int) -> None:
    batch: list[str] = []
    for text in docs:
        batch.append(text)
        if len(batch) == ENCODE_BATCH_DOCS:
            _encode_batch(sp, batch, writer, vocab_size)
            batch = []
    if batch:
        _encode_batch(sp, batch, writer, vocab_size)
    writer.close()


def _encode_batch(sp: spm.SentencePieceProcessor, texts: list[str], writer: _SplitWriter, vocab_size: int) -> None:
    for text, ids in zip(texts, sp.encode(texts, out_type=int), strict=True):
        doc = np.empty(len(ids) + 1, dtype=np.int32)
        doc[0] = BOS_ID
        doc[1:] = ids
        if doc.size and int(doc.max()) >= vocab_size:
            raise DataError(
                f"tokenizer produced id {int(doc.max())} >= vocab_size {vocab_size}: use a matching tokenizer"
            )
        writer.add(doc, len(text.encode("utf-8")))


# ---------------------------------------------------------------------------------------------
# build_dataset


def build_dataset(
    inputs: Sequence[PathInput],
    out_dir: PathInput,
    *,
    name: str | None = None,
    tokenizer: PathInput | None = None,
    vocab_size: int | None = None,
    val_inputs: Sequence[PathInput] | None = None,
    val_fraction: float | None = None,
    shard_tokens: int = 100_000_000,
) -> DatasetPaths:
    """Tokenize text into `out_dir/datasets/<name>/` shards plus `out_dir/tokenizers/<tok>.model`.

    With `tokenizer`, that model is copied (an explicit `vocab_size` must match it); otherwise a BPE of
    `vocab_size` (default 1024) is trained on the train documents. The val split is `val_inputs`, or
    else the first `val_fraction` (default 0.1) of the documents.
    """
    out_dir = Path(out_dir)
    if shard_tokens <= 0:
        raise DataError(f"shard_tokens={shard_tokens} must be positive: e.g. 100000000")
    train_files = expand_inputs(inputs)
    val_files = expand_inputs(val_inputs) if val_inputs else None
    n_val_docs = _val_doc_count(train_files, val_files, val_fraction)
    corpus = _corpus_name(train_files)

    if tokenizer is None:
        target = vocab_size or DEFAULT_VOCAB_SIZE
        name = name or f"{corpus}_sp{target}"
        tokenizer_docs = _skip(read_documents(train_files), n_val_docs)
        tokenizer_path = train_sentencepiece(tokenizer_docs, target, out_dir / "tokenizers" / f"{name}.model")
    else:
        tokenizer_path = _copy_tokenizer(Path(tokenizer), out_dir / "tokenizers", vocab_size)
    sp = load_sentencepiece(tokenizer_path)
    _check_tokenizer_for_shards(sp, tokenizer_path)
    vocab = int(sp.vocab_size())
    name = name or f"{corpus}_sp{vocab}"

    val_docs = read_documents(val_files) if val_files else _take(read_documents(train_files), n_val_docs)
    train_docs = _skip(read_documents(train_files), n_val_docs)
    dataset_dir = out_dir / "datasets" / name
    with _staging_dir(dataset_dir) as staging:
        writers = [_SplitWriter(staging, "val", shard_tokens), _SplitWriter(staging, "train", shard_tokens)]
        for writer, docs in zip(writers, (val_docs, train_docs), strict=True):
            _encode_split(sp, docs, writer, vocab)
        val_source = [str(f) for f in val_files] if val_files else f"first {n_val_docs} documents of the inputs"
        inputs_meta = {"train": [str(f) for f in train_files], "val": val_source}
        _write_metadata(staging, name, tokenizer_path, vocab, shard_tokens, writers, inputs_meta)
    return DatasetPaths(dataset_dir=dataset_dir, tokenizer_path=tokenizer_path, vocab_size=vocab)


def _val_doc_count(train_files: list[Path], val_files: list[Path] | None, val_fraction: float | None) -> int:
    """How many leading documents of the train inputs form the val split (0 with explicit val inputs)."""
    if val_files is not None:
        if val_fraction is not None:
            raise DataError("give either val inputs or val_fraction, not both: drop one of --val-input/--val-fraction")
        return 0
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    if not 0.0 < fraction < 1.0:
        raise DataError(f"val_fraction={fraction} must be between 0 and 1 (exclusive): e.g. --val-fraction 0.1")
    total = sum(1 for _ in read_documents(train_files))
    if total < 2:
        raise DataError(
            f"the corpus has {total} document; splitting off a val set needs at least 2: "
            "add documents or give --val-input"
        )
    return min(max(1, round(fraction * total)), total - 1)


def _skip(docs: Iterator[str], count: int) -> Iterator[str]:
    for index, text in enumerate(docs):
        if index >= count:
            yield text


def _take(docs: Iterator[str], count: int) -> Iterator[str]:
    for index, text in enumerate(docs):
        if index >= count:
            return
        yield text


def _corpus_name(files: list[Path]) -> str:
    """A single input names the corpus by its stem; several by their common parent folder."""
    if len(files) == 1:
        raw = files[0].stem
    else:
        raw = Path(os.path.commonpath([f.resolve().parent for f in files])).name or "corpus"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_") or "corpus"


def _copy_tokenizer(source: Path, tok_dir: Path, vocab_size: int | None) -> Path:
    """Copy a given `.model` (and its `.vocab`, if any) into `tok_dir`; an explicit vocab_size must match."""
    sp = load_sentencepiece(source)
    if vocab_size is not None:
        check_vocab_size(sp, vocab_size, name=source.name)
    target = tok_dir / source.name
    for suffix in (".model", ".vocab"):
        src, dst = source.with_suffix(suffix), target.with_suffix(suffix)
        if src.is_file() and not (dst.exists() and os.path.samefile(src, dst)):
            atomic_write_bytes(dst, src.read_bytes())
    return target


def _check_tokenizer_for_shards(sp: spm.SentencePieceProcessor, path: Path) -> None:
    assert_space_piece(sp)
    if sp.bos_id() != BOS_ID:
        raise DataError(
            f"tokenizer {path} has bos_id={sp.bos_id()}: shards need BOS id {BOS_ID}; retrain with bos_id=1"
        )
    if sp.vocab_size() > MAX_TOKEN_ID + 1:
        raise DataError(
            f"tokenizer {path} has {sp.vocab_size()} pieces: .bin shards hold ids < 65536; use a smaller vocabulary"
        )


@contextlib.contextmanager
def _staging_dir(final: Path) -> Iterator[Path]:
    """Build a directory under a temporary name beside `final`, then swap it into place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield staging
        _replace_dir(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(new: Path, final: Path) -> None:
    """Rename `new` to `final`; an existing `final` is moved aside first and then deleted."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
        os.replace(final, old / final.name)
    os.replace(new, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_metadata(
    directory: Path,
    name: str,
    tokenizer_path: Path,
    vocab_size: int,
    shard_tokens: int,
    writers: list[_SplitWriter],
    inputs: dict[str, object],
) -> None:
    shards = [
        {
            "name": path.name,
            "split": writer.split,
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for writer in writers
        for path in writer.shards
    ]
    atomic_write_json(
        directory / "dataset.json",
        {
            "format": DATASET_FORMAT,
            "name": name,
            "tokenizer": tokenizer_path.name,
            "vocab_size": vocab_size,
            "bos_id": BOS_ID,
            "shard_tokens": shard_tokens,
            "docs": {w.split: w.docs for w in writers},
            "tokens": {w.split: w.tokens for w in writers},
            "text_bytes": {w.split: w.text_bytes for w in writers},
            "inputs": inputs,
            "shards": shards,
        },
    )


# ---------------------------------------------------------------------------------------------
# Embedded sample dataset


def embedded_corpus_files() -> tuple[list[Path], list[Path]]:
    """The shipped FineWeb sample: (train files, val files), sorted."""
    return sorted(SAMPLE_DIR.glob("train-*.jsonl")), sorted(SAMPLE_DIR.glob("val-*.jsonl"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("PGOLF_CACHE") or Path.home() / ".cache" / "pgolf")


def embedded_dataset(variant: str = "sp1024", cache_dir: PathInput | None = None) -> DatasetPaths:
    """The embedded corpus tokenized with a shipped tokenizer, built once and cached.

    The cache entry is keyed by the variant and a hash of the corpus and tokenizer bytes, built in a
    temporary folder and renamed into place, so concurrent first uses are safe.
    """
    tokenizer = EMBEDDED_TOKENIZERS.get(variant)
    if tokenizer is None:
        raise DataError(f"unknown embedded dataset variant {variant!r}: choose one of {', '.join(EMBEDDED_TOKENIZERS)}")
    train_files, val_files = embedded_corpus_files()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = root / f"embedded-{variant}-{_inputs_key([*train_files, *val_files, tokenizer])}"
    name = f"fineweb_sample_{variant}"
    if not entry.is_dir():
        _build_cache_entry(entry, train_files, val_files, tokenizer, name)
    return DatasetPaths(entry / "datasets" / name, entry / "tokenizers" / tokenizer.name, _vocab_of(tokenizer))


def _build_cache_entry(entry: Path, train_files: list[Path], val_files: list[Path], tokenizer: Path, name: str) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        build_dataset(
            train_files,
            staging,
            name=name,
            tokenizer=tokenizer,
            val_inputs=val_files,
            shard_tokens=EMBEDDED_SHARD_TOKENS,
        )
        os.rename(staging, entry)
    except OSError:
        if not entry.is_dir():  # a rename that lost a race to another process is fine
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _inputs_key(files: list[Path]) -> str:
    digest = hashlib.sha256(DATASET_FORMAT.encode())
    for path in files:
        digest.update(path.name.encode() + b"\0" + sha256_file(path).encode())
    return digest.hexdigest()[:16]


def _vocab_of(tokenizer: Path) -> int:
    return int(load_sentencepiece(tokenizer).vocab_size())
