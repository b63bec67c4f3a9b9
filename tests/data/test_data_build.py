from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from pgolf.data.build import (
    BOS_ID,
    _build_cache_entry,
    build_dataset,
    embedded_corpus_files,
    embedded_dataset,
    read_documents,
)
from pgolf.data.shards import Split, list_shards, open_shard, read_num_tokens, validate_shard
from pgolf.data.tokenizer import load_sentencepiece
from pgolf.errors import DataError

DOCS = [
    "The court held that the statute applied.",
    "Zweiter Text: Grüße aus Köln, naïve café.",
    "  leading spaces and\nnewlines stay as they are  ",
    "Numbers 12345 and symbols $%& — done.",
    "A fifth short document about regulation and policy.",
    "Sixth: the agency published its notice today.",
    "Seventh document, with a “quote” and 😀.",
    "Eighth and last document of the tiny corpus.",
]


def _stream(dataset_dir: Path, split: Split) -> np.ndarray:
    return np.concatenate([np.asarray(open_shard(p)) for p in list_shards(dataset_dir, split)]).astype(np.int64)


def _expected(sp, docs: list[str]) -> list[int]:
    return [t for d in docs for t in [BOS_ID, *sp.encode(d)]]


def test_build_jsonl_straddles_shards_with_bos_per_doc(tmp_path: Path, small_tokenizer: Path, write_jsonl) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", DOCS[:5])
    b = write_jsonl(tmp_path / "b.jsonl", DOCS[5:])
    paths = build_dataset([a, b], tmp_path / "out", tokenizer=small_tokenizer, val_fraction=0.25, shard_tokens=48)
    sp = load_sentencepiece(small_tokenizer)
    assert paths.dataset_dir == tmp_path / "out" / "datasets" / f"{tmp_path.name}_sp{sp.vocab_size()}"
    assert paths.tokenizer_path == tmp_path / "out" / "tokenizers" / small_tokenizer.name
    assert paths.tokenizer_path.read_bytes() == small_tokenizer.read_bytes()
    assert paths.tokenizer_path.with_suffix(".vocab").is_file()
    val, train = _stream(paths.dataset_dir, "val"), _stream(paths.dataset_dir, "train")
    assert val.tolist() == _expected(sp, DOCS[:2])  # first 25% of documents, raw text, BOS first
    assert train.tolist() == _expected(sp, DOCS[2:])
    assert int((train == BOS_ID).sum()) == 6 and int((val == BOS_ID).sum()) == 2
    sizes = [read_num_tokens(p) for p in list_shards(paths.dataset_dir, "train")]
    assert len(sizes) > 2 and all(s == 48 for s in sizes[:-1]) and 0 < sizes[-1] <= 48
    starts = np.cumsum([0, *sizes[:-1]])
    assert any(train[s] != BOS_ID for s in starts)  # some shard starts mid-document
    for shard in list_shards(paths.dataset_dir, "train"):
        validate_shard(shard, sp.vocab_size())


def test_metadata_describes_the_shards(tmp_path: Path, small_tokenizer: Path, write_jsonl) -> None:
    src = write_jsonl(tmp_path / "corpus.jsonl", DOCS)
    paths = build_dataset(
        [src], tmp_path / "out", tokenizer=small_tokenizer, val_fraction=0.25, shard_tokens=48, name="tiny"
    )
    meta = json.loads((paths.dataset_dir / "dataset.json").read_text())
    assert meta["name"] == "tiny" and meta["tokenizer"] == small_tokenizer.name
    assert meta["vocab_size"] == paths.vocab_size and meta["docs"] == {"val": 2, "train": 6}
    assert meta["text_bytes"]["val"] == sum(len(d.encode()) for d in DOCS[:2])
    assert meta["tokens"]["train"] == len(_stream(paths.dataset_dir, "train"))
    from pgolf.utils import sha256_file

    for shard in meta["shards"]:
        path = paths.dataset_dir / shard["name"]
        assert shard["sha256"] == sha256_file(path) and shard["bytes"] == path.stat().st_size
    assert {s["name"] for s in meta["shards"]} == {p.name for p in paths.dataset_dir.glob("*.bin")}


def test_txt_inputs_glob_and_explicit_val(tmp_path: Path, small_tokenizer: Path, write_jsonl) -> None:
    docs_dir = tmp_path / "books"
    docs_dir.mkdir()
    for i, text in enumerate(DOCS[:3]):
        (docs_dir / f"doc{i}.txt").write_text(text, encoding="utf-8")
    val = write_jsonl(tmp_path / "val.jsonl", DOCS[3:5])
    paths = build_dataset([str(docs_dir / "*.txt")], tmp_path / "out", tokenizer=small_tokenizer, val_inputs=[val])
    sp = load_sentencepiece(small_tokenizer)
    assert paths.dataset_dir.name == f"books_sp{sp.vocab_size()}"
    assert _stream(paths.dataset_dir, "train").tolist() == _expected(sp, DOCS[:3])
    assert _stream(paths.dataset_dir, "val").tolist() == _expected(sp, DOCS[3:5])
    assert list(read_documents([docs_dir])) == DOCS[:3]  # a folder means its .jsonl/.txt files, sorted
    meta = json.loads((paths.dataset_dir / "dataset.json").read_text())
    assert meta["inputs"]["train"]["files"] == [str(docs_dir / f"doc{i}.txt") for i in range(3)]
    assert meta["inputs"]["val"]["files"] == [str(val)]


def test_trains_a_tokenizer_when_none_given(tmp_path: Path, small_docs: list[str], write_jsonl) -> None:
    src = write_jsonl(tmp_path / "web.jsonl", small_docs[:40])
    paths = build_dataset([src], tmp_path / "out", vocab_size=400, val_fraction=0.1, shard_tokens=40_000)
    assert paths.dataset_dir.name == "web_sp400" and paths.tokenizer_path.name == "web_sp400.model"
    sp = load_sentencepiece(paths.tokenizer_path)
    assert paths.vocab_size == sp.vocab_size() <= 400
    assert _stream(paths.dataset_dir, "val").tolist() == _expected(sp, small_docs[:4])


def test_rebuild_replaces_dataset_atomically(tmp_path: Path, small_tokenizer: Path, write_jsonl) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", DOCS)
    first = build_dataset([src], tmp_path / "out", tokenizer=small_tokenizer, shard_tokens=48, name="d")
    n_first = len(list(first.dataset_dir.glob("*.bin")))
    second = build_dataset([src], tmp_path / "out", tokenizer=small_tokenizer, shard_tokens=1000, name="d")
    assert len(list(second.dataset_dir.glob("*.bin"))) == 2 < n_first  # old shards are gone
    assert sorted(p.name for p in (tmp_path / "out" / "datasets").iterdir()) == ["d"]  # no temp dirs left


def test_non_utf8_jsonl_names_file_and_offset(tmp_path: Path, small_tokenizer: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    first = b'{"text": "fine"}\n'
    bad.write_bytes(first + b'{"text": "caf\xe9"}\n')
    offset = len(first) + len(b'{"text": "caf')
    with pytest.raises(
        DataError, match=rf"bad\.jsonl is not valid UTF-8: bad byte 0xe9 at byte offset {offset}: re-encode"
    ):
        build_dataset([bad], tmp_path / "out", tokenizer=small_tokenizer)
    assert not (tmp_path / "out" / "datasets").exists() or not any((tmp_path / "out" / "datasets").iterdir())


def test_non_utf8_txt(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"abc\xff")
    with pytest.raises(DataError, match=r"bad\.txt is not valid UTF-8: bad byte 0xff at byte offset 3"):
        list(read_documents([bad]))


def test_empty_corpus(tmp_path: Path, small_tokenizer: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="the corpus has no documents"):
        build_dataset([empty], tmp_path / "out", tokenizer=small_tokenizer)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", r"bad\.jsonl line 2 is not valid JSON"),
        ('{"body": "x"}', r"bad\.jsonl line 2 has no string \"text\" field"),
        ('["text"]', r"line 2 has no string \"text\" field"),
    ],
)
def test_bad_jsonl_lines(tmp_path: Path, line: str, message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        list(read_documents([bad]))


def test_input_errors(tmp_path: Path, small_tokenizer: Path, write_jsonl) -> None:
    with pytest.raises(DataError, match=r"matches no files"):
        list(read_documents([str(tmp_path / "*.jsonl")]))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(DataError, match=r"unsupported type '\.csv'"):
        list(read_documents([tmp_path / "x.csv"]))
    src = write_jsonl(tmp_path / "c.jsonl", DOCS)
    with pytest.raises(DataError, match=r"either val inputs or val_fraction"):
        build_dataset([src], tmp_path / "o", tokenizer=small_tokenizer, val_inputs=[src], val_fraction=0.1)
    with pytest.raises(DataError, match=r"val_fraction=1.5 must be between 0 and 1"):
        build_dataset([src], tmp_path / "o", tokenizer=small_tokenizer, val_fraction=1.5)


def test_tokenizer_vocab_mismatch(tmp_path: Path, sp8192_path: Path, write_jsonl) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", DOCS)
    with pytest.raises(DataError, match=r"VOCAB_SIZE=1024 .* vocab_size=8192: set model.vocab_size to 8192"):
        build_dataset([src], tmp_path / "out", tokenizer=sp8192_path, vocab_size=1024)
    paths = build_dataset([src], tmp_path / "out", tokenizer=sp8192_path, vocab_size=8192)
    assert paths.vocab_size == 8192 and paths.dataset_dir.name == "c_sp8192"


def test_cache_entry_race_is_harmless(tmp_path: Path, small_tokenizer: Path, write_jsonl) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", DOCS)
    entry = tmp_path / "cache" / "entry"
    (entry / "marker").parent.mkdir(parents=True)
    (entry / "marker").write_text("built by another process")
    _build_cache_entry(entry, [src], [src], small_tokenizer, "n")  # loses the rename race
    assert sorted(p.name for p in entry.iterdir()) == ["marker"]
    assert sorted(p.name for p in entry.parent.iterdir()) == ["entry"]  # staging cleaned up


def test_embedded_dataset_builds_once_and_is_cached(tmp_path: Path) -> None:
    train_files, val_files = embedded_corpus_files()
    assert len(train_files) == 6 and len(val_files) == 1
    start = time.perf_counter()
    paths = embedded_dataset("sp1024", cache_dir=tmp_path)
    build_s = time.perf_counter() - start
    meta = json.loads((paths.dataset_dir / "dataset.json").read_text())
    assert meta["docs"] == {"train": 2515, "val": 280} and meta["vocab_size"] == paths.vocab_size == 1024
    assert meta["text_bytes"] == {"train": 17_564_108, "val": 1_854_106}  # matches sample/README.md
    val = _stream(paths.dataset_dir, "val")
    assert int((val == BOS_ID).sum()) == 280 and val[0] == BOS_ID
    assert len(list_shards(paths.dataset_dir, "train")) > 1
    for shard in list_shards(paths.dataset_dir, "train"):
        validate_shard(shard, 1024)
    stamp = os.stat(paths.dataset_dir).st_mtime_ns
    start = time.perf_counter()
    assert embedded_dataset("sp1024", cache_dir=tmp_path) == paths
    assert time.perf_counter() - start < min(1.0, build_s) and os.stat(paths.dataset_dir).st_mtime_ns == stamp
    with pytest.raises(DataError, match=r"unknown embedded dataset variant 'sp9'"):
        embedded_dataset("sp9", cache_dir=tmp_path)


# ---- challenge-scale options -----------------------------------------------------------------------
def test_parallel_encoding_writes_identical_shards(tmp_path: Path, small_docs: list[str], write_jsonl) -> None:
    from pgolf.data.build import BuildOptions

    src = write_jsonl(tmp_path / "c.jsonl", small_docs[:30])
    sp8192 = Path(__file__).parents[2] / "src" / "pgolf" / "data" / "tokenizers" / "fineweb_8192_bpe.model"
    one, many = (build_dataset([src], tmp_path / f"out{t}", tokenizer=sp8192, shard_tokens=20_000,
                               options=BuildOptions(threads=t)) for t in (1, 2))
    assert one.dataset_dir.name == "c_sp8192"
    names = sorted(p.name for p in one.dataset_dir.glob("*.bin"))
    assert len(names) > 3 and names == sorted(p.name for p in many.dataset_dir.glob("*.bin"))
    assert all((one.dataset_dir / n).read_bytes() == (many.dataset_dir / n).read_bytes() for n in names)


def test_unigram_tokenizer_of_requested_size(tmp_path: Path, small_docs: list[str], write_jsonl) -> None:
    from pgolf.data.build import BuildOptions

    src = write_jsonl(tmp_path / "web.jsonl", small_docs[:40])
    paths = build_dataset([src], tmp_path / "out", vocab_size=700, shard_tokens=50_000,
                          options=BuildOptions(model_type="unigram", tokenizer_train_docs=30))
    sp = load_sentencepiece(paths.tokenizer_path)
    assert paths.dataset_dir.name == "web_sp700" and sp.vocab_size() == 700
    scores = [sp.get_score(i) for i in range(sp.vocab_size()) if not (sp.is_control(i) or sp.is_byte(i))]
    assert any(not float(s).is_integer() for s in scores)  # unigram log-probabilities, not BPE merge ranks


def test_document_larger_than_a_shard_is_refused(tmp_path: Path, small_tokenizer: Path, write_jsonl) -> None:
    src = write_jsonl(tmp_path / "c.jsonl", DOCS)
    message = r"val document 0 has \d+ tokens, more than a whole shard \(8\): raise --shard-tokens"
    with pytest.raises(DataError, match=message):
        build_dataset([src], tmp_path / "out", tokenizer=small_tokenizer, shard_tokens=8)
    assert not list((tmp_path / "out" / "datasets").glob("*/*.bin"))  # nothing half-written


def test_replace_invalid_reads_bad_bytes(tmp_path: Path, small_tokenizer: Path) -> None:
    from pgolf.data.build import BuildOptions

    (tmp_path / "a.txt").write_bytes(b"caf\xe9 au lait")
    (tmp_path / "b.txt").write_bytes(b"second document")
    message = r"a\.txt is not valid UTF-8: bad byte 0xe9 at byte offset 3: .*--replace-invalid"
    with pytest.raises(DataError, match=message):
        build_dataset([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "out", tokenizer=small_tokenizer)
    paths = build_dataset([tmp_path / "a.txt", tmp_path / "b.txt"], tmp_path / "out", tokenizer=small_tokenizer,
                          options=BuildOptions(replace_invalid=True))
    meta = json.loads((paths.dataset_dir / "dataset.json").read_text())
    assert meta["text_bytes"]["val"] == len("caf\ufffd au lait".encode())


def test_vocabulary_beyond_uint16_is_refused(tmp_path: Path, write_jsonl) -> None:
    import io

    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["hello world"] * 10), model_writer=proto, vocab_size=65_900, minloglevel=2,
        user_defined_symbols=[f"w{i}" for i in range(65_600)], hard_vocab_limit=False, byte_fallback=True,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3)
    (tmp_path / "big.model").write_bytes(proto.getvalue())
    src = write_jsonl(tmp_path / "c.jsonl", DOCS)
    with pytest.raises(DataError, match=r"has 65,869 ids, more than the 65,536 \(ids 0\.\.65,535\) that uint16"):
        build_dataset([src], tmp_path / "out", tokenizer=tmp_path / "big.model")


def test_cli_download_reports_offline_failure_as_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from pgolf.cli import main
    from pgolf.data.hub import default_repo_id

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    args = ["data", "download", "--variant", "sp8192", "--out", str(tmp_path / "data"), "--train-shards", "1"]
    assert main(args) == 2
    assert "kevclark/parameter-golf" in capsys.readouterr().err  # the repo that publishes sp8192
    assert default_repo_id("sp1024") == "willdepueoai/parameter-golf"
