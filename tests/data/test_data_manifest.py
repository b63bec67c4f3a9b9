from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pgolf.data.build import BuildOptions, build_dataset
from pgolf.data.manifest import check_dataset, count_documents
from pgolf.data.shards import list_shards, open_shard, write_shard
from pgolf.errors import DataError


@pytest.fixture
def corpus(tmp_path: Path, small_docs: list[str], write_jsonl) -> Path:
    return write_jsonl(tmp_path / "web.jsonl", small_docs[:30])


def _build(corpus: Path, out: Path, tokenizer: Path, **options: Any) -> Path:
    return build_dataset([corpus], out, tokenizer=tokenizer, val_fraction=0.2, shard_tokens=20_000,
                         options=BuildOptions(**options)).dataset_dir


def test_manifest_records_disjoint_document_ranges(corpus: Path, tmp_path: Path, sp1024_path: Path) -> None:
    dataset = _build(corpus, tmp_path / "out", sp1024_path)
    meta = json.loads((dataset / "dataset.json").read_text())
    val, train = meta["documents"]["val"], meta["documents"]["train"]
    assert (val["first"], val["count"], train["first"], train["count"]) == (0, 6, 6, 24)
    assert val["source"] == train["source"] and meta["train_val_overlap"] == 0
    assert count_documents(list_shards(dataset, "val")) == 6
    assert check_dataset(dataset, list_shards(dataset, "train")) == []


def test_prefix_options_limit_documents(corpus: Path, tmp_path: Path, sp1024_path: Path, small_docs) -> None:
    by_docs = json.loads((_build(corpus, tmp_path / "a", sp1024_path, max_docs=10) / "dataset.json").read_text())
    assert by_docs["docs"] == {"val": 2, "train": 8}
    limit = sum(len(d.encode()) for d in small_docs[:12]) + 1
    by_bytes = json.loads((_build(corpus, tmp_path / "b", sp1024_path, max_bytes=limit) / "dataset.json").read_text())
    assert sum(by_bytes["docs"].values()) == 12


def test_train_document_equal_to_a_val_document_is_refused(tmp_path: Path, small_docs, sp1024_path: Path,
                                                           write_jsonl) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", small_docs[:10] + [small_docs[20]])
    val = write_jsonl(tmp_path / "val.jsonl", small_docs[20:23])
    dataset = build_dataset([train], tmp_path / "out", tokenizer=sp1024_path, val_inputs=[val]).dataset_dir
    assert json.loads((dataset / "dataset.json").read_text())["train_val_overlap"] == 1
    with pytest.raises(DataError, match=r"1 train documents are identical to val documents \(train ∩ val ≠ ∅\)"):
        check_dataset(dataset, list_shards(dataset, "train"))


def test_changed_val_split_is_refused(corpus: Path, tmp_path: Path, sp1024_path: Path) -> None:
    dataset = _build(corpus, tmp_path / "out", sp1024_path)
    val = list_shards(dataset, "val")[0]
    tokens = np.asarray(open_shard(val)).copy()
    tokens[-1] = 5
    write_shard(val, tokens)
    with pytest.raises(DataError, match=r"does not match its sha256 in dataset\.json"):
        check_dataset(dataset, list_shards(dataset, "train"))


def test_official_download_must_hold_the_canonical_val_split(corpus: Path, tmp_path: Path, sp1024_path: Path) -> None:
    built = _build(corpus, tmp_path / "out", sp1024_path)
    official = tmp_path / "data" / "datasets" / "fineweb10B_sp1024"
    shutil.copytree(built, official)
    (official / "dataset.json").unlink()  # downloads carry no pgolf manifest
    with pytest.raises(DataError, match=r"holds 6 documents \(BOS tokens\) but must hold 50,000 .*canonical"):
        check_dataset(official, list_shards(official, "train"))


def test_fewer_train_shards_than_expected_warns(corpus: Path, tmp_path: Path, sp1024_path: Path) -> None:
    dataset = _build(corpus, tmp_path / "out", sp1024_path)
    files = list_shards(dataset, "train")
    (warning,) = check_dataset(dataset, files[:1], expected_train_shards=80)
    assert "uses 1 train shards but its preset expects 80" in warning
