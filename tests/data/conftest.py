"""Fixtures for the pgolf.data tests: shipped tokenizers, a small trained tokenizer, tiny corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sentencepiece as spm

from pgolf.data.build import EMBEDDED_TOKENIZERS, embedded_corpus_files, read_documents
from pgolf.data.tokenizer import load_sentencepiece, train_sentencepiece


@pytest.fixture(scope="session")
def sp8192_path() -> Path:
    return EMBEDDED_TOKENIZERS["sp8192"]


@pytest.fixture(scope="session")
def sp1024_path() -> Path:
    return EMBEDDED_TOKENIZERS["sp1024"]


@pytest.fixture(scope="session")
def sp8192(sp8192_path: Path) -> spm.SentencePieceProcessor:
    return load_sentencepiece(sp8192_path)


@pytest.fixture(scope="session")
def small_docs() -> list[str]:
    """150 real documents from the embedded corpus."""
    docs = read_documents(embedded_corpus_files()[0])
    return [next(docs) for _ in range(150)]


@pytest.fixture(scope="session")
def small_tokenizer(tmp_path_factory: pytest.TempPathFactory, small_docs: list[str]) -> Path:
    """A freshly trained 400-piece BPE (about 0.3 s)."""
    return train_sentencepiece(small_docs, 400, tmp_path_factory.mktemp("tok") / "small_400_bpe.model")


def _write_jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path


@pytest.fixture
def write_jsonl():
    """`write_jsonl(path, texts)`: one {"text": ...} object per line."""
    return _write_jsonl


@pytest.fixture(scope="session")
def no_space_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained directly (not via pgolf) on text without spaces: it has no '▁' piece (pitfall P1)."""
    folder = tmp_path_factory.mktemp("nospace")
    texts = ["abcabcabdabdacdbcdbcadab" * 20 for _ in range(20)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(folder / "nospace"), vocab_size=300, byte_fallback=True,
        model_type="bpe", minloglevel=2, add_dummy_prefix=False, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
    )
    return folder / "nospace.model"
