from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pgolf.config import load_config
from pgolf.data import caseops
from pgolf.data.build import BuildOptions, build_dataset
from pgolf.data.families import load_tokenizer
from pgolf.data.resolve import eval_byte_counter, load_eval_data, resolve_dataset
from pgolf.data.shards import list_shards, open_shard
from pgolf.data.sidecar import SidecarBytes, sidecar_files
from pgolf.errors import DataError
from pgolf.evaluate.plain import EvalSetup, evaluate_plain
from pgolf.pipeline import run_train
from testkit import tiny_overrides


@pytest.mark.parametrize("text, encoded", [
    ("Hello World", "\ue001hello \ue001world"),
    ("NASA I a", "\ue002nasa \ue001i a"),
    ("iPhone McDonald", "i\ue003phone \ue001mc\ue003donald"),
    ("x\ue001y\ue004", "x\ue004\ue001y\ue004\ue004"),
    ("ÄBC Ünïcode", "Ä\ue002bc Ünïcode"),
])
def test_transform_matches_the_records_and_inverts(text: str, encoded: str) -> None:
    assert caseops.encode(text) == encoded and caseops.decode(encoded) == text


def test_transform_is_lossless_on_real_text(small_docs: list[str]) -> None:
    for text in small_docs:
        assert caseops.decode(caseops.encode(text)) == text


@pytest.fixture(scope="module")
def caseops_dataset(tmp_path_factory: pytest.TempPathFactory, small_docs: list[str]):
    root = tmp_path_factory.mktemp("caseops")
    (root / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in small_docs[:40]))
    (root / "val.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in small_docs[40:46]))
    paths = build_dataset([root / "train.jsonl"], root / "out", vocab_size=600, val_inputs=[root / "val.jsonl"],
                          shard_tokens=40_000, options=BuildOptions(caseops=True))
    return paths, small_docs[40:46]


def test_caseops_build_writes_a_sidecar_of_original_bytes(caseops_dataset) -> None:
    paths, val_docs = caseops_dataset
    assert paths.dataset_dir.name == "train_sp600_caseops"
    tokens = np.concatenate([np.asarray(open_shard(p)) for p in list_shards(paths.dataset_dir, "val")])
    counts = np.concatenate([np.asarray(open_shard(p)) for p in sidecar_files(paths.dataset_dir)])
    assert counts.shape == tokens.shape and counts[tokens == 1].sum() == 0
    # Documents' sidecar sums equal the original UTF-8 lengths (of the normalized, decoded text).
    tok = load_tokenizer(paths.tokenizer_path)
    starts = [*np.flatnonzero(tokens == 1), tokens.size]
    assert len(starts) == len(val_docs) + 1
    for a, b in itertools.pairwise(starts):
        assert int(counts[a:b].sum()) == len(tok.decode_bytes(tokens[a + 1 : b].tolist()))
    transformed_lut_bytes = sum(len(caseops.encode(d).encode()) for d in val_docs)
    assert int(counts.sum()) < transformed_lut_bytes  # operators are not counted as 3-byte text


def test_eval_uses_the_sidecar_and_never_the_lut(caseops_dataset, tmp_path: Path) -> None:
    paths, _ = caseops_dataset
    overrides = tiny_overrides(paths, **{"model.vocab_size": paths.vocab_size, "eval.val_max_tokens": 0})
    cfg = load_config(overrides=overrides, env={})
    data = load_eval_data(cfg, resolve_dataset(cfg), cfg.train.train_seq_len)
    assert isinstance(data.lut, SidecarBytes)
    setup = EvalSetup(seq_len=64, batch_tokens=4096)
    result, _ = evaluate_plain(lambda x, y: torch.full(y.shape, 2.0), data.tokens, data.lut, setup, torch.device("cpu"))
    scored = data.tokens.numel() - 1
    assert result.val_bytes == int(data.lut.counts[1 : scored + 1].sum())
    assert result.val_bpb == pytest.approx(2.0 / np.log(2) * scored / result.val_bytes, rel=1e-12)
    copy = Path(shutil.copytree(paths.dataset_dir, tmp_path / "copy"))
    for sidecar in sidecar_files(copy):  # a missing sidecar is refused, not replaced by the LUT
        sidecar.unlink()
    with pytest.raises(DataError, match="does not align with the val shards"):
        eval_byte_counter(copy, load_tokenizer(paths.tokenizer_path), paths.vocab_size, 100)
    (copy / "dataset.json").unlink()
    with pytest.raises(DataError, match="needs a val byte sidecar"):
        eval_byte_counter(copy, load_tokenizer(paths.tokenizer_path), paths.vocab_size, 100)


def test_plain_sidecar_gives_the_lut_score(tmp_path: Path, small_docs: list[str], sp1024_path: Path,
                                           write_jsonl) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", small_docs[:20])
    paths = build_dataset([src], tmp_path / "out", tokenizer=sp1024_path, val_fraction=0.3,
                          options=BuildOptions(byte_sidecar=True))
    cfg = load_config(overrides=tiny_overrides(paths, **{"eval.val_max_tokens": 0}), env={})
    data = load_eval_data(cfg, resolve_dataset(cfg), 64)
    lut = load_tokenizer(sp1024_path).byte_lut(1024)
    setup, device = EvalSetup(seq_len=64, batch_tokens=4096), torch.device("cpu")
    losses = lambda x, y: (y % 7).double() + 0.5  # noqa: E731 - a per-token loss that varies
    with_sidecar, _ = evaluate_plain(losses, data.tokens, data.lut, setup, device)
    with_lut, _ = evaluate_plain(losses, data.tokens, lut, setup, device)
    assert isinstance(data.lut, SidecarBytes)
    assert (with_sidecar.val_bytes, with_sidecar.val_bpb) == (with_lut.val_bytes, with_lut.val_bpb)


def test_training_on_caseops_with_doc_aligned_loader(caseops_dataset, tmp_path: Path) -> None:
    paths, _ = caseops_dataset
    overrides = tiny_overrides(paths, **{"model.vocab_size": paths.vocab_size, "data.loader": "doc_aligned",
                                         "run.out_dir": str(tmp_path), "run.run_id": "caseops", "train.iterations": 3})
    summary = run_train(load_config(overrides=overrides, env={}))
    cfg = load_config(overrides=overrides, env={})
    data = load_eval_data(cfg, resolve_dataset(cfg), cfg.train.train_seq_len)
    assert isinstance(data.lut, SidecarBytes)
    assert summary["val_bytes"] == int(data.lut.counts[1 : data.tokens.numel()].sum())
    assert "data_warning" in (tmp_path / "caseops" / "train.log").read_text()  # 1 shard < the expected 80
