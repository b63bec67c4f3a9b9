"""Documents → official `.bin` shards (TECHNIQUES §1.3), with byte sidecars and document records.

Each document is encoded raw, BOS (id 1) is prepended, no EOS; documents straddle shards and every
shard but the last of a split holds exactly `shard_tokens`. A split written with a sidecar also gets
`fineweb_<split>_bytes_NNNNNN.bin`: one uint16 per token, the source bytes that token stands for
(§4.24), aligned 1:1 with the token shards. Every document's sha256 is folded into the split's
document-list hash, and val digests are kept so that train documents equal to a val document are
counted (the manifest records that count; loading refuses a dataset where it is not zero).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgolf.data.families import BOS_ID, Tokenizer
from pgolf.data.shards import write_shard
from pgolf.errors import DataError
from pgolf.utils import sha256_file

ENCODE_BATCH_DOCS = 256
MAX_ROUNDTRIP_EXAMPLES = 20


def doc_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


@dataclass
class SplitWriter:
    """Buffers one split's tokens (and sidecar bytes) and writes full shards of `shard_tokens` as they fill."""

    directory: Path
    split: str
    shard_tokens: int
    sidecar: bool = False
    exclude: frozenset[bytes] = frozenset()  # digests of documents of another split (val, when writing train)
    shards: list[Path] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    docs: int = 0
    tokens: int = 0
    text_bytes: int = 0
    counted_bytes: int = 0
    overlap: int = 0
    digests: list[bytes] = field(default_factory=list)
    _buffer: list[np.ndarray] = field(default_factory=list)
    _byte_buffer: list[np.ndarray] = field(default_factory=list)
    _buffered: int = 0

    def add(self, ids: np.ndarray, text: str, token_bytes: np.ndarray) -> None:
        """Append one document: `ids` starts with BOS; `token_bytes` is aligned with it."""
        if ids.size > self.shard_tokens:
            raise DataError(
                f"{self.split} document {self.docs} has {ids.size:,} tokens, more than a whole shard "
                f"({self.shard_tokens:,}): raise --shard-tokens above the longest document"
            )
        digest = doc_digest(text)
        self.digests.append(digest)
        self.overlap += digest in self.exclude
        self._buffer.append(ids)
        if self.sidecar:
            self._byte_buffer.append(token_bytes)
        self._buffered += ids.size
        self.docs += 1
        self.tokens += ids.size
        self.text_bytes += len(text.encode("utf-8"))
        self.counted_bytes += int(token_bytes.sum())
        while self._buffered >= self.shard_tokens:
            self._write(self.shard_tokens)

    def close(self) -> None:
        if self._buffered:
            self._write(self._buffered)

    def docs_sha256(self) -> str:
        return hashlib.sha256(b"".join(self.digests)).hexdigest()

    def _write(self, count: int) -> None:
        index = len(self.shards)
        self._buffer = self._flush(self._buffer, count, f"fineweb_{self.split}_{index:06d}.bin", self.shards)
        if self.sidecar:
            name = f"fineweb_{self.split}_bytes_{index:06d}.bin"
            self._byte_buffer = self._flush(self._byte_buffer, count, name, self.sidecars)
        self._buffered -= count

    def _flush(self, buffer: list[np.ndarray], count: int, name: str, written: list[Path]) -> list[np.ndarray]:
        joined = np.concatenate(buffer)
        write_shard(self.directory / name, joined[:count])
        written.append(self.directory / name)
        rest = joined[count:]
        return [rest] if rest.size else []


@dataclass
class RoundTrip:
    """Documents whose encode → decode does not give back their exact bytes."""

    checked: int = 0
    failed: int = 0
    examples: list[dict[str, object]] = field(default_factory=list)

    def check(self, tok: Tokenizer, split: str, index: int, text: str, ids: list[int]) -> None:
        self.checked += 1
        decoded = tok.decode_bytes(ids)
        original = text.encode("utf-8")
        if decoded == original:
            return
        self.failed += 1
        if len(self.examples) < MAX_ROUNDTRIP_EXAMPLES:
            pairs = enumerate(zip(decoded, original, strict=False))  # lengths differ when text is lost or added
            at = next((i for i, (a, b) in pairs if a != b), min(len(decoded), len(original)))
            self.examples.append({"split": split, "document": index, "source_bytes": len(original),
                                  "decoded_bytes": len(decoded), "first_difference_at": at,
                                  "source": original[max(at - 20, 0): at + 20].decode("utf-8", "replace")})

    def to_dict(self) -> dict[str, object]:
        return {"checked": self.checked, "failed": self.failed, "examples": self.examples}


def encode_documents(tok: Tokenizer, docs: Iterable[str], writer: SplitWriter, threads: int = 1,
                     roundtrip: RoundTrip | None = None) -> None:
    """Encode `docs` in batches (SentencePiece and tiktoken use `threads` over documents) into `writer`."""
    batch: list[str] = []
    for text in docs:
        batch.append(text)
        if len(batch) == ENCODE_BATCH_DOCS * max(threads, 1):
            _encode_batch(tok, batch, writer, threads, roundtrip)
            batch = []
    if batch:
        _encode_batch(tok, batch, writer, threads, roundtrip)
    writer.close()


def _encode_batch(tok: Tokenizer, texts: list[str], writer: SplitWriter, threads: int,
                  roundtrip: RoundTrip | None) -> None:
    for text, ids in zip(texts, tok.encode_batch(texts, threads), strict=True):
        if roundtrip is not None:
            roundtrip.check(tok, writer.split, writer.docs, text, ids)
        doc = np.empty(len(ids) + 1, dtype=np.int64)
        doc[0] = BOS_ID
        doc[1:] = ids
        if doc.size and int(doc.max()) >= tok.vocab_size:
            raise DataError(
                f"tokenizer {tok.name} produced id {int(doc.max())} >= its vocab_size {tok.vocab_size}: "
                "the tokenizer file is inconsistent; retrain or re-download it"
            )
        writer.add(doc, text, tok.token_bytes(doc))


def shard_records(writers: list[SplitWriter]) -> list[dict[str, object]]:
    """Name, split, size and sha256 of every file the writers produced."""
    return [
        {"name": path.name, "split": writer.split, "kind": kind, "bytes": path.stat().st_size,
         "sha256": sha256_file(path)}
        for writer in writers
        for kind, paths in (("tokens", writer.shards), ("bytes", writer.sidecars))
        for path in paths
    ]


def split_records(writers: list[SplitWriter]) -> dict[str, dict[str, object]]:
    return {w.split: {"docs": w.docs, "tokens": w.tokens, "text_bytes": w.text_bytes,
                      "counted_bytes": w.counted_bytes, "docs_sha256": w.docs_sha256(), "shards": len(w.shards),
                      "sidecar": w.sidecar} for w in writers}


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
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
