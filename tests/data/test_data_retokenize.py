from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pgolf.cli import main
from pgolf.data.build import BuildOptions, build_dataset
from pgolf.data.families import load_tokenizer
from pgolf.data.manifest import check_dataset
from pgolf.data.retokenize import retokenize_dataset, shard_documents
from pgolf.data.shards import Split, list_shards
from pgolf.errors import DataError


@pytest.fixture
def source(tmp_path: Path, small_docs: list[str], sp1024_path: Path, write_jsonl):
    src = write_jsonl(tmp_path / "web.jsonl", small_docs[:24])
    return build_dataset([src], tmp_path / "src", tokenizer=sp1024_path, val_fraction=0.25, shard_tokens=30_000)


def _texts(dataset: Path, tokenizer: Path | str, split: Split) -> list[bytes]:
    tok = load_tokenizer(tokenizer)
    return [tok.decode_bytes(doc[1:].tolist()) for doc in shard_documents(list_shards(dataset, split))]


def test_retokenize_keeps_every_document_byte_exact(source, tmp_path: Path, sp8192_path: Path) -> None:
    result = retokenize_dataset(source.dataset_dir, sp8192_path, tmp_path / "out", threads=2)
    assert result.paths.dataset_dir.name == "web_sp8192" and result.docs == {"val": 6, "train": 18}
    assert (result.roundtrip.checked, result.roundtrip.failed) == (24, 0)
    for split in ("val", "train"):
        expected = _texts(source.dataset_dir, source.tokenizer_path, split)
        assert _texts(result.paths.dataset_dir, sp8192_path, split) == expected
    meta = json.loads((result.paths.dataset_dir / "dataset.json").read_text())
    old = json.loads((source.dataset_dir / "dataset.json").read_text())
    assert meta["documents"]["train"]["first"] == old["documents"]["train"]["first"] == 6
    assert check_dataset(result.paths.dataset_dir, list_shards(result.paths.dataset_dir, "train")) == []


def test_documents_that_do_not_round_trip_are_reported(tmp_path: Path, write_jsonl, capsys) -> None:
    # byte260 keeps text as is; sp1024 normalizes (NFKC, whitespace), so these cannot come back exactly.
    docs = ["plain text", "double  space", "ligature ﬁne", "fine again", "last one"]
    src = build_dataset([write_jsonl(tmp_path / "raw.jsonl", docs)], tmp_path / "src", tokenizer="byte260",
                        val_fraction=0.2, options=BuildOptions(byte_sidecar=True))
    sp1024 = Path(__file__).parents[2] / "src" / "pgolf" / "data" / "tokenizers" / "fineweb_1024_bpe.model"
    code = main(["data", "retokenize", str(src.dataset_dir), "--tokenizer", str(sp1024), "--out",
                 str(tmp_path / "out"), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "roundtrip: 3 of 5 documents byte-exact" in out
    meta = json.loads((tmp_path / "out" / "datasets" / "raw_sp1024" / "dataset.json").read_text())
    examples = meta["retokenized_from"]["roundtrip"]["examples"]
    assert [(e["split"], e["document"]) for e in examples] == [("train", 0), ("train", 1)]


def test_shard_documents_joins_documents_across_shards(tmp_path: Path) -> None:
    from pgolf.data.shards import write_shard

    write_shard(tmp_path / "fineweb_train_000000.bin", np.array([1, 5, 6, 1, 7]))
    write_shard(tmp_path / "fineweb_train_000001.bin", np.array([8, 9, 1, 4]))
    docs = [d.tolist() for d in shard_documents(sorted(tmp_path.glob("*.bin")))]
    assert docs == [[1, 5, 6], [1, 7, 8, 9], [1, 4]]
    write_shard(tmp_path / "fineweb_train_000000.bin", np.array([5, 1, 6]))
    with pytest.raises(DataError, match="does not start with BOS"):
        list(shard_documents(sorted(tmp_path.glob("*.bin"))))
