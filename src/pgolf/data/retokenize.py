"""`pgolf data retokenize`: decode a dataset's shards document by document and re-encode them.

Documents are found by their BOS tokens (they may straddle shards), decoded with the source
tokenizer, and encoded with the new one into a dataset of the same splits and document order. Every
document is checked to round-trip byte-exactly through the new tokenizer (decode(encode(text)) ==
text); the failures are counted and the first ones described in the manifest and the result.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgolf.data.audit import audit_tokenizer, require_clean
from pgolf.data.build import DatasetPaths, write_manifest
from pgolf.data.families import BOS_ID, Tokenizer, check_shard_vocab, load_tokenizer
from pgolf.data.manifest import read_manifest
from pgolf.data.shards import list_shards, open_shard
from pgolf.data.writer import RoundTrip, SplitWriter, encode_documents, staging_dir
from pgolf.errors import DataError

AUDIT_DOCS = 200


@dataclass(frozen=True)
class RetokenizeResult:
    paths: DatasetPaths
    roundtrip: RoundTrip
    docs: dict[str, int]


def shard_documents(files: list[Path]) -> Iterator[np.ndarray]:
    """The documents of a split: token runs that start at a BOS, joined across shard boundaries."""
    carry = np.zeros(0, dtype=np.int64)
    for path in files:
        tokens = np.asarray(open_shard(path)).astype(np.int64)
        if carry.size == 0 and tokens.size and tokens[0] != BOS_ID:
            raise DataError(f"shard {path} does not start with BOS (id {BOS_ID}) and continues no document: "
                            "documents cannot be recovered; rebuild the source dataset")
        starts = np.flatnonzero(tokens == BOS_ID)
        pieces = np.split(tokens, starts)
        carry = np.concatenate([carry, pieces[0]]) if carry.size else pieces[0]
        for piece in pieces[1:]:
            if carry.size:
                yield carry
            carry = piece
    if carry.size:
        yield carry


def _source_tokenizer(src: Path, given: str | None, meta: dict | None) -> Tokenizer:
    if given:
        return load_tokenizer(given)
    if meta is None or "tokenizer" not in meta:
        raise DataError(f"{src} has no dataset.json naming its tokenizer (an official download?): "
                        "pass --source-tokenizer PATH")
    candidate = src.parent.parent / "tokenizers" / str(meta["tokenizer"])
    if not candidate.is_file():
        raise DataError(f"the source tokenizer {candidate} (from {src}/dataset.json) does not exist: "
                        "pass --source-tokenizer PATH")
    return load_tokenizer(candidate)


def _decoded(tok: Tokenizer, docs: Iterator[np.ndarray]) -> Iterator[str]:
    for doc in docs:
        yield tok.decode_bytes(doc[1:].tolist()).decode("utf-8")


def retokenize_dataset(src: str | Path, tokenizer: str | Path, out_dir: str | Path, *, name: str | None = None,
                       source_tokenizer: str | None = None, shard_tokens: int | None = None, threads: int = 1,
                       force: bool = False) -> RetokenizeResult:
    """Write `out_dir/datasets/<name>/` with the documents of `src` encoded by `tokenizer`."""
    src, out_dir = Path(src), Path(out_dir)
    meta = read_manifest(src)
    old = _source_tokenizer(src, source_tokenizer, meta)
    new = load_tokenizer(tokenizer)
    check_shard_vocab(new)
    sample = itertools.islice(_decoded(old, shard_documents(list_shards(src, "train"))), AUDIT_DOCS)
    require_clean(audit_tokenizer(new, sample, threads), force)
    tokenizer_file = new.save(out_dir / "tokenizers")
    shard_tokens = shard_tokens or int((meta or {}).get("shard_tokens", 100_000_000))
    name = name or f"{src.name.rsplit('_', 1)[0] if '_' in src.name else src.name}_{new.variant}"
    roundtrip = RoundTrip()
    dataset_dir = out_dir / "datasets" / name
    with staging_dir(dataset_dir) as staging:
        val = SplitWriter(staging, "val", shard_tokens, sidecar=new.needs_sidecar)
        encode_documents(new, _decoded(old, shard_documents(list_shards(src, "val"))), val, threads, roundtrip)
        train = SplitWriter(staging, "train", shard_tokens, exclude=frozenset(val.digests))
        encode_documents(new, _decoded(old, shard_documents(list_shards(src, "train"))), train, threads, roundtrip)
        source = f"dataset:{src.name}"
        ranges = (meta or {}).get("documents") or {
            "val": {"source": source, "first": 0}, "train": {"source": source, "first": val.docs}}
        documents = {w.split: {"source": ranges[w.split]["source"], "first": ranges[w.split]["first"], "count": w.docs,
                               "sha256": w.docs_sha256()} for w in (val, train)}
        write_manifest(staging, name, tokenizer_file, new, shard_tokens, [val, train], documents, {
            "retokenized_from": {"dataset": str(src), "tokenizer": old.name, "roundtrip": roundtrip.to_dict()},
            "caseops": new.needs_sidecar})
    return RetokenizeResult(DatasetPaths(dataset_dir, tokenizer_file, new.vocab_size), roundtrip,
                            {"val": val.docs, "train": train.docs})

