from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest
import sentencepiece as spm
import torch

from pgolf.data.tokenizer import (
    SPACE_PIECE,
    ByteLUT,
    assert_space_piece,
    build_byte_lut,
    check_vocab_size,
    load_sentencepiece,
    train_sentencepiece,
    training_lines,
    vocab_text,
)
from pgolf.errors import DataError

# Multi-byte UTF-8 (2-, 3- and 4-byte characters), spaces before multi-byte characters, digits,
# punctuation; nothing that NFKC or whitespace normalization would change.
TEXT = "Grüße aus Köln — naïve café 東京タワー 😀 and 2024: “quoted” ü ∑ x ≠ y. Ελληνικά ok"


def _bytes_of(sp: spm.SentencePieceProcessor, lut: ByteLUT, text: str) -> int:
    ids = torch.tensor([sp.bos_id(), *sp.encode(text)])
    return int(lut.token_bytes(ids[:-1], ids[1:]).sum())


def test_text_is_stable_under_normalization() -> None:
    assert unicodedata.normalize("NFKC", TEXT) == TEXT and "  " not in TEXT


def test_load_errors(tmp_path: Path, sp8192_path: Path) -> None:
    with pytest.raises(DataError, match=r"absent\.model does not exist"):
        load_sentencepiece(tmp_path / "absent.model")
    with pytest.raises(DataError, match=r"is not a \.model file"):
        load_sentencepiece(sp8192_path.with_suffix(".vocab"))
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a protobuf \xff\xff\xff")
    with pytest.raises(DataError, match=r"garbage\.model could not be parsed"):
        load_sentencepiece(garbage)


def test_check_vocab_size(sp8192: spm.SentencePieceProcessor) -> None:
    check_vocab_size(sp8192, 8192)
    with pytest.raises(
        DataError,
        match=r"VOCAB_SIZE=1024 \(model\.vocab_size\) does not match tokenizer fineweb_8192_bpe\.model "
        r"vocab_size=8192: set model\.vocab_size to 8192",
    ):
        check_vocab_size(sp8192, 1024, name="fineweb_8192_bpe.model")


def test_lut_classes_on_official_sp8192(sp8192: spm.SentencePieceProcessor) -> None:
    lut = build_byte_lut(sp8192, 8192)
    assert len(lut) == 8192 and lut.base_bytes.dtype == torch.int16
    for control in (0, 1, 2, 3):  # <pad> <s> </s> <unk>
        assert (lut.base_bytes[control], lut.has_leading_space[control], lut.is_boundary[control]) == (0, False, True)
    byte_ids = [i for i in range(8192) if sp8192.is_byte(i)]
    assert len(byte_ids) == 256
    # P2: <0xEF> decodes to U+FFFD (3 bytes) but stands for one source byte.
    assert lut.base_bytes[byte_ids].eq(1).all() and not lut.is_boundary[byte_ids].any()
    assert not lut.has_leading_space[byte_ids].any()
    the = sp8192.piece_to_id("▁the")
    assert (int(lut.base_bytes[the]), bool(lut.has_leading_space[the])) == (3, True)
    space = sp8192.piece_to_id(SPACE_PIECE)
    assert (int(lut.base_bytes[space]), bool(lut.has_leading_space[space])) == (0, True)
    inner = sp8192.piece_to_id("ing")
    assert (int(lut.base_bytes[inner]), bool(lut.has_leading_space[inner])) == (3, False)


def test_lut_pads_to_model_vocab(sp8192: spm.SentencePieceProcessor) -> None:
    lut = build_byte_lut(sp8192, 8200)
    assert len(lut) == 8200
    assert lut.is_boundary[8192:].all() and lut.base_bytes[8192:].eq(0).all()


def test_leading_space_not_counted_after_boundary(sp8192: spm.SentencePieceProcessor) -> None:
    lut = build_byte_lut(sp8192, 8192)
    the, bos, word = sp8192.piece_to_id("▁the"), sp8192.bos_id(), sp8192.piece_to_id("ing")
    got = lut.token_bytes(torch.tensor([bos, word, bos]), torch.tensor([the, the, bos]))
    assert got.dtype == torch.int64 and got.tolist() == [3, 4, 0]


def test_total_bytes_equal_utf8_length_sp8192(sp8192: spm.SentencePieceProcessor) -> None:
    lut = build_byte_lut(sp8192, 8192)
    pieces = [sp8192.id_to_piece(i) for i in sp8192.encode(TEXT)]
    assert any(p.startswith("<0x") for p in pieces)  # the emoji goes through byte fallback
    assert _bytes_of(sp8192, lut, TEXT) == len(TEXT.encode("utf-8"))


def test_total_bytes_equal_utf8_length_trained(small_tokenizer: Path, small_docs: list[str]) -> None:
    sp = load_sentencepiece(small_tokenizer)
    lut = build_byte_lut(sp, sp.vocab_size())
    assert _bytes_of(sp, lut, TEXT) == len(TEXT.encode("utf-8"))
    doc = " ".join(small_docs[0].split())  # a real document, whitespace already normalized
    if unicodedata.normalize("NFKC", doc) == doc:
        assert _bytes_of(sp, lut, doc) == len(doc.encode("utf-8"))


@pytest.mark.parametrize(
    "text", ["  leading spaces, Grüße  aus\tKöln ", "ﬁne ① ｗｉｄｅ", " x", "tabs\tand\nnewlines ü"]
)
def test_total_bytes_equal_normalized_text_bytes(
    sp8192: spm.SentencePieceProcessor, sp1024_path: Path, small_tokenizer: Path, text: str
) -> None:
    """The LUT measures the text as SentencePiece normalized it (TECHNIQUES §2.3)."""
    for sp in (sp8192, load_sentencepiece(sp1024_path), load_sentencepiece(small_tokenizer)):
        normalized = sp.normalize(text).replace(SPACE_PIECE, " ")
        assert normalized != text
        assert _bytes_of(sp, build_byte_lut(sp, sp.vocab_size()), text) == len(normalized.encode("utf-8"))


def test_lut_to_device_keeps_values(sp8192: spm.SentencePieceProcessor) -> None:
    lut = build_byte_lut(sp8192, 8192)
    moved = lut.to("cpu")
    assert torch.equal(moved.base_bytes, lut.base_bytes) and isinstance(moved, ByteLUT)


def test_missing_space_piece_is_refused(no_space_model: Path) -> None:
    sp = load_sentencepiece(no_space_model)
    # P1: the space becomes the three UTF-8 bytes of '▁', which a LUT would count as 3 bytes.
    assert [sp.id_to_piece(i) for i in sp.encode("a b")] == ["a", "<0xE2>", "<0x96>", "<0x81>", "b"]
    with pytest.raises(DataError, match="no standalone '▁' piece"):
        assert_space_piece(sp)
    with pytest.raises(DataError, match="pitfall P1"):
        build_byte_lut(sp, 300)


def test_trained_tokenizer_always_has_space_piece(tmp_path: Path) -> None:
    texts = ["abcabcabdabdacdbcdbcadab" * 20 for _ in range(20)]
    sp = load_sentencepiece(train_sentencepiece(texts, 300, tmp_path / "nospace.model"))
    assert sp.piece_to_id(SPACE_PIECE) != sp.unk_id()
    lut = build_byte_lut(sp, 300)
    assert _bytes_of(sp, lut, "abc abd") == 7


def test_training_is_deterministic_and_uses_official_settings(tmp_path: Path, small_docs: list[str]) -> None:
    first = train_sentencepiece(small_docs[:60], 350, tmp_path / "a" / "tok.model")
    second = train_sentencepiece(small_docs[:60], 350, tmp_path / "b" / "tok.model")
    assert first.read_bytes() == second.read_bytes()
    assert first.with_suffix(".vocab").read_bytes() == second.with_suffix(".vocab").read_bytes()
    assert b"/tmp" not in first.read_bytes()  # no temporary path embedded
    sp = load_sentencepiece(first)
    assert (sp.pad_id(), sp.bos_id(), sp.eos_id(), sp.unk_id()) == (0, 1, 2, 3)
    assert sum(sp.is_byte(i) for i in range(sp.vocab_size())) == 256  # byte fallback
    assert [sp.id_to_piece(i) for i in sp.encode("in 2024")][-4:] == ["2", "0", "2", "4"]  # split digits
    assert not sp.id_to_piece(sp.encode("Hello")[0]).startswith(SPACE_PIECE)  # no dummy prefix
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["tok.model", "tok.vocab"]


def test_training_lines_match_official_preprocessing() -> None:
    assert list(training_lines(["  a\x00b  ", "", " \n ", "c\nd"])) == ["a b", "c\nd"]


def test_training_without_text_fails(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no non-empty training text"):
        train_sentencepiece(["   ", ""], 300, tmp_path / "t.model")
    assert list(tmp_path.iterdir()) == []


def test_vocab_text_matches_sentencepiece_format(sp8192: spm.SentencePieceProcessor, sp8192_path: Path) -> None:
    assert vocab_text(sp8192) == sp8192_path.with_suffix(".vocab").read_text(encoding="utf-8")


def test_shipped_sp1024(sp1024_path: Path) -> None:
    sp = load_sentencepiece(sp1024_path)
    assert sp.vocab_size() == 1024
    assert vocab_text(sp) == sp1024_path.with_suffix(".vocab").read_text(encoding="utf-8")
    lut = build_byte_lut(sp, 1024)
    assert _bytes_of(sp, lut, TEXT) == len(TEXT.encode("utf-8"))


def test_shipped_sp1024_is_reproducible(tmp_path: Path, sp1024_path: Path) -> None:
    """The regeneration command in tokenizers/README.md gives the shipped files byte for byte."""
    from pgolf.data.build import embedded_corpus_files, read_documents

    model = train_sentencepiece(read_documents(embedded_corpus_files()[0]), 1024, tmp_path / sp1024_path.name)
    assert model.read_bytes() == sp1024_path.read_bytes()
    assert model.with_suffix(".vocab").read_bytes() == sp1024_path.with_suffix(".vocab").read_bytes()
