"""Dataset manifests (`dataset.json`) and the checks run when a dataset is loaded for training.

A pgolf dataset records, per split, the range of source documents it holds (`source`, `first`,
`count`), the sha256 of its document list, and how many train documents equal a val document.
Loading then refuses a dataset whose train and val splits share documents, whose val shards are not
the ones recorded, or whose val split does not hold the recorded number of documents (one BOS per
document). An official download (`fineweb10B_*`, no pgolf manifest) must hold the canonical val
split: the first 50,000 documents, i.e. exactly 50,000 BOS tokens (TECHNIQUES §1.1, §1.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pgolf.data.families import BOS_ID
from pgolf.data.shards import SIDECAR_MARKER, list_shards, open_shard
from pgolf.errors import DataError
from pgolf.utils import read_json, sha256_file

DATASET_FORMAT = "pgolf-dataset-v2"
MANIFEST_NAME = "dataset.json"
OFFICIAL_PREFIX = "fineweb10B_"
CANONICAL_VAL_DOCS = 50_000


@dataclass(frozen=True)
class DatasetPaths:
    """Where a dataset lives: its shard folder, its tokenizer file and the vocabulary size."""

    dataset_dir: Path
    tokenizer_path: Path
    vocab_size: int


@dataclass(frozen=True)
class DocumentRange:
    """Documents `[first, first + count)` of the document stream named `source`."""

    source: str
    first: int
    count: int

    def overlaps(self, other: DocumentRange) -> bool:
        return (self.source == other.source and self.first < other.first + other.count
                and other.first < self.first + self.count)


def read_manifest(dataset_dir: Path) -> dict[str, Any] | None:
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    meta = read_json(path, "rebuild the dataset with `pgolf data build`")
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not a dataset manifest: rebuild the dataset with `pgolf data build`")
    return meta


def count_documents(files: list[Path], chunk: int = 1 << 24) -> int:
    """Number of BOS tokens (= documents) in the shards."""
    total = 0
    for path in files:
        tokens = open_shard(path)
        for start in range(0, tokens.size, chunk):
            total += int(np.count_nonzero(tokens[start : start + chunk] == BOS_ID))
    return total


def check_dataset(dataset_dir: Path, train_files: list[Path], expected_train_shards: int = 0) -> list[str]:
    """Raise DataError on a leaking or non-canonical split; return warnings (too few train shards)."""
    dataset_dir = Path(dataset_dir)
    val_files = list_shards(dataset_dir, "val")
    meta = read_manifest(dataset_dir)
    if meta is None:
        if dataset_dir.name.startswith(OFFICIAL_PREFIX):
            _check_val_docs(dataset_dir, val_files, CANONICAL_VAL_DOCS, "the canonical first 50,000 documents")
    else:
        _check_manifest(dataset_dir, meta, val_files)
    warnings = []
    if expected_train_shards and len(train_files) < expected_train_shards:
        warnings.append(
            f"this run uses {len(train_files)} train shards but its preset expects {expected_train_shards}: "
            "fewer shards repeat data and cost bpb; download more (`pgolf data download --train-shards "
            f"{expected_train_shards}`) or set data.expected_train_shards"
        )
    return warnings


def _check_val_docs(dataset_dir: Path, val_files: list[Path], expected: int, what: str) -> None:
    found = count_documents(val_files)
    if found != expected:
        raise DataError(
            f"the val split of {dataset_dir} holds {found:,} documents (BOS tokens) but must hold {expected:,} "
            f"({what}): the val shards are not the recorded split; re-download or rebuild the dataset"
        )


def _check_manifest(dataset_dir: Path, meta: dict[str, Any], val_files: list[Path]) -> None:
    docs = meta.get("documents")
    if isinstance(docs, dict) and "val" in docs and "train" in docs:
        val, train = (DocumentRange(str(docs[s]["source"]), int(docs[s]["first"]), int(docs[s]["count"]))
                      for s in ("val", "train"))
        if val.overlaps(train):
            raise DataError(
                f"{dataset_dir}: train documents {train.first}..{train.first + train.count - 1} and val documents "
                f"{val.first}..{val.first + val.count - 1} of {val.source} overlap: rebuild the dataset"
            )
    overlap = int(meta.get("train_val_overlap", 0))
    if overlap:
        raise DataError(
            f"{dataset_dir}: {overlap} train documents are identical to val documents (train ∩ val ≠ ∅): "
            "remove them from the train inputs and rebuild the dataset"
        )
    recorded = {s["name"]: s["sha256"] for s in meta.get("shards", []) if s.get("split") == "val"}
    if recorded:
        present = {p.name for p in dataset_dir.glob("fineweb_val_*.bin")}
        if present != set(recorded):
            raise DataError(
                f"{dataset_dir}: val files {sorted(present)} differ from the manifest's {sorted(recorded)}: "
                "the val split was changed after the build; rebuild the dataset"
            )
        for name, digest in recorded.items():
            if sha256_file(dataset_dir / name) != digest:
                raise DataError(f"{dataset_dir}/{name} does not match its sha256 in {MANIFEST_NAME}: "
                                "the val split was modified; rebuild or re-download the dataset")
    val_docs = (meta.get("docs") or {}).get("val")
    if val_docs is not None:
        _check_val_docs(dataset_dir, val_files, int(val_docs), f"the {int(val_docs):,} recorded in {MANIFEST_NAME}")


def has_val_sidecar(dataset_dir: Path) -> bool:
    """Whether the dataset has (or its manifest promises) a val byte sidecar."""
    meta = read_manifest(dataset_dir) or {}
    promised = bool((meta.get("splits") or {}).get("val", {}).get("sidecar"))
    return promised or any(Path(dataset_dir).glob(f"fineweb_val{SIDECAR_MARKER}*.bin"))
