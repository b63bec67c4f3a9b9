"""Text → tokenizer + official shards (`pgolf data build`), and the embedded sample dataset.

Any vocabulary size: with no tokenizer given, a SentencePiece BPE (or unigram) of `vocab_size` is
trained on the train documents; any tokenizer family of `pgolf.data.families` can be given instead.
CaseOps (`caseops=True`) trains on transformed text and writes a val byte sidecar so that bpb is
counted on the original bytes. The tokenizer must pass the byte-accounting audit before any shard is
written (unless forced). The val split is chosen per document before tokenization, like the official
first-50k split; the manifest (`dataset.json`) records both splits' document ranges and hashes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgolf.data import caseops
from pgolf.data.audit import audit_tokenizer, require_clean
from pgolf.data.corpus import Corpus, PathInput, read_documents
from pgolf.data.families import BOS_ID, Tokenizer, check_shard_vocab, load_tokenizer
from pgolf.data.manifest import DATASET_FORMAT, MANIFEST_NAME, DatasetPaths
from pgolf.data.tokenizer import check_vocab_size, load_sentencepiece, train_sentencepiece
from pgolf.data.writer import SplitWriter, encode_documents, shard_records, split_records, staging_dir
from pgolf.errors import DataError
from pgolf.utils import atomic_write_json, default_cache_dir, sha256_file

__all__ = ["BOS_ID", "BuildOptions", "DatasetPaths", "build_dataset", "embedded_dataset", "read_documents"]

DEFAULT_VOCAB_SIZE = 1024
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SHARD_TOKENS = 100_000_000
MODEL_TYPES = ("bpe", "unigram")
PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"
TOKENIZER_DIR = PACKAGE_DIR / "tokenizers"
EMBEDDED_TOKENIZERS = {
    "sp1024": TOKENIZER_DIR / "fineweb_1024_bpe.model",
    "sp8192": TOKENIZER_DIR / "fineweb_8192_bpe.model",
}
EMBEDDED_SHARD_TOKENS = 1_000_000  # several train shards, so multi-shard code paths get exercised


@dataclass(frozen=True)
class BuildOptions:
    """How `build_dataset` reads, tokenizes and checks (defaults: the official pipeline)."""

    model_type: str = "bpe"  # trained tokenizers: bpe | unigram
    caseops: bool = False  # CaseOps transform + operators + val byte sidecar
    byte_sidecar: bool = False  # write the val byte sidecar for any tokenizer
    max_docs: int = 0  # use only a prefix of the inputs (0 = all)
    max_bytes: int = 0
    tokenizer_train_docs: int = 0  # train the tokenizer on the first N train documents (0 = all)
    replace_invalid: bool = False  # read non-UTF-8 bytes as U+FFFD instead of failing
    threads: int = 1  # encode documents in parallel
    audit_docs: int = 200  # documents of the corpus audit run before writing shards
    force: bool = False  # write shards even if the tokenizer fails the audit


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
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    options: BuildOptions = BuildOptions(),
) -> DatasetPaths:
    """Tokenize text into `out_dir/datasets/<name>/` shards plus the tokenizer in `out_dir/tokenizers/`.

    With `tokenizer` (a spec of `load_tokenizer`), that tokenizer is used (an explicit `vocab_size`
    must match it); otherwise one of `vocab_size` (default 1024) is trained on the train documents.
    The val split is `val_inputs`, or else the first `val_fraction` (default 0.1) of the documents.
    """
    out_dir = Path(out_dir)
    if shard_tokens <= 0:
        raise DataError(f"shard_tokens={shard_tokens} must be positive: e.g. 100000000")
    if options.model_type not in MODEL_TYPES:
        raise DataError(f"model type {options.model_type!r} is not one of {', '.join(MODEL_TYPES)}: "
                        "e.g. --model-type bpe")
    train_corpus = Corpus.of(inputs, options.max_docs, options.max_bytes, options.replace_invalid)
    val_corpus = Corpus.of(val_inputs, replace_invalid=options.replace_invalid) if val_inputs else None
    n_val = _val_doc_count(train_corpus, val_corpus, val_fraction)
    corpus = _corpus_name(list(train_corpus.files))
    tok_dir = out_dir / "tokenizers"
    if tokenizer is None:
        size = vocab_size or DEFAULT_VOCAB_SIZE
        tok = _train_tokenizer(_skip(iter(train_corpus), n_val), size, tok_dir,
                               name or _default_name(corpus, size, options), options)
    else:
        tok = _given_tokenizer(tokenizer, vocab_size, options)
    check_shard_vocab(tok)
    audit_docs = itertools.islice(_skip(iter(train_corpus), n_val), options.audit_docs)
    require_clean(audit_tokenizer(tok, audit_docs, options.threads), options.force)
    tokenizer_file = tok.save(tok_dir)
    name = name or _default_name(corpus, tok.vocab_size, options, tok)

    val_docs = iter(val_corpus) if val_corpus else _take(iter(train_corpus), n_val)
    dataset_dir = out_dir / "datasets" / name
    with staging_dir(dataset_dir) as staging:
        val = SplitWriter(staging, "val", shard_tokens, sidecar=tok.needs_sidecar or options.byte_sidecar)
        encode_documents(tok, val_docs, val, options.threads)
        train = SplitWriter(staging, "train", shard_tokens, exclude=frozenset(val.digests))
        encode_documents(tok, _skip(iter(train_corpus), n_val), train, options.threads)
        train_source = _source_id(train_corpus)
        val_source = _source_id(val_corpus) if val_corpus else train_source
        documents = {"val": _document_range(val, val_source, 0),
                     "train": _document_range(train, train_source, 0 if val_corpus else n_val)}
        inputs_meta = {"train": train_corpus.describe(),
                       "val": val_corpus.describe() if val_corpus else f"first {n_val} documents of the inputs"}
        write_manifest(staging, name, tokenizer_file, tok, shard_tokens, [val, train], documents,
                       {"inputs": inputs_meta, "caseops": options.caseops})
    return DatasetPaths(dataset_dir=dataset_dir, tokenizer_path=tokenizer_file, vocab_size=tok.vocab_size)


def _train_tokenizer(docs: Iterator[str], vocab_size: int, tok_dir: Path, name: str,
                     options: BuildOptions) -> Tokenizer:
    if options.tokenizer_train_docs:
        docs = itertools.islice(docs, options.tokenizer_train_docs)
    symbols: tuple[str, ...] = ()
    if options.caseops:
        docs = (caseops.encode(text) for text in docs)
        symbols = caseops.OPERATORS
    path = train_sentencepiece(docs, vocab_size, tok_dir / f"{name}.model", options.model_type, symbols)
    return load_tokenizer(path)


def _given_tokenizer(spec: PathInput, vocab_size: int | None, options: BuildOptions) -> Tokenizer:
    tok = load_tokenizer(spec)
    if vocab_size is not None:
        check_vocab_size(tok.vocab_size, vocab_size, name=tok.name)
    if options.caseops and not tok.needs_sidecar:
        raise DataError(
            f"--caseops needs a CaseOps tokenizer but {tok.name} has no CaseOps operators: "
            "drop --tokenizer to train one, or drop --caseops"
        )
    return tok


def _default_name(corpus: str, vocab_size: int, options: BuildOptions, tok: Tokenizer | None = None) -> str:
    """`<corpus>_<variant>`; a tokenizer still to be trained is named like the one it will be."""
    variant = tok.variant if tok is not None else f"sp{vocab_size}" + ("_caseops" if options.caseops else "")
    return f"{corpus}_{variant}"


def _document_range(writer: SplitWriter, source: str, first: int) -> dict[str, Any]:
    return {"source": source, "first": first, "count": writer.docs, "sha256": writer.docs_sha256()}


def _source_id(corpus: Corpus) -> str:
    """Names a document stream by its files' names and prefix limits (ranges of one stream are comparable)."""
    described = {**corpus.describe(), "files": [f.name for f in corpus.files]}
    return "inputs:" + hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def write_manifest(directory: Path, name: str, tokenizer_file: Path, tok: Tokenizer, shard_tokens: int,
                   writers: list[SplitWriter], documents: dict[str, Any], extra: dict[str, Any]) -> None:
    """`dataset.json`: tokenizer, per-split counts and document ranges, and every file's sha256."""
    overlap = sum(w.overlap for w in writers)
    atomic_write_json(directory / MANIFEST_NAME, {
        "format": DATASET_FORMAT, "name": name, "tokenizer": tokenizer_file.name, "vocab_size": tok.vocab_size,
        "bos_id": BOS_ID, "shard_tokens": shard_tokens,
        "docs": {w.split: w.docs for w in writers}, "tokens": {w.split: w.tokens for w in writers},
        "text_bytes": {w.split: w.text_bytes for w in writers}, "splits": split_records(writers),
        "documents": documents, "train_val_overlap": overlap, "shards": shard_records(writers), **extra,
    })


def _val_doc_count(train: Corpus, val: Corpus | None, val_fraction: float | None) -> int:
    """How many leading documents of the train inputs form the val split (0 with explicit val inputs)."""
    if val is not None:
        if val_fraction is not None:
            raise DataError("give either val inputs or val_fraction, not both: drop one of --val-input/--val-fraction")
        return 0
    fraction = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
    if not 0.0 < fraction < 1.0:
        raise DataError(f"val_fraction={fraction} must be between 0 and 1 (exclusive): e.g. --val-fraction 0.1")
    total = sum(1 for _ in train)
    if total < 2:
        raise DataError(
            f"the corpus has {total} document; splitting off a val set needs at least 2: "
            "add documents or give --val-input"
        )
    return min(max(1, round(fraction * total)), total - 1)


def _skip(docs: Iterator[str], count: int) -> Iterator[str]:
    return itertools.islice(docs, count, None)


def _take(docs: Iterator[str], count: int) -> Iterator[str]:
    return itertools.islice(docs, count)


def _corpus_name(files: list[Path]) -> str:
    """A single input names the corpus by its stem; several by their common parent folder."""
    if len(files) == 1:
        raw = files[0].stem
    else:
        raw = Path(os.path.commonpath([f.resolve().parent for f in files])).name or "corpus"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_") or "corpus"


# ---------------------------------------------------------------------------------------------
# Embedded sample dataset


def embedded_corpus_files() -> tuple[list[Path], list[Path]]:
    """The shipped FineWeb sample: (train files, val files), sorted."""
    return sorted(SAMPLE_DIR.glob("train-*.jsonl")), sorted(SAMPLE_DIR.glob("val-*.jsonl"))


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
