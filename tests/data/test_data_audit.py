from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pgolf.cli import main
from pgolf.data import caseops
from pgolf.data.audit import audit_tokenizer, load_lut_file
from pgolf.data.build import build_dataset
from pgolf.data.families import SentencePieceTokenizer, load_tokenizer
from pgolf.data.tokenizer import lut_arrays, train_sentencepiece
from pgolf.errors import DataError

# Byte-fallback characters, a literal operator character, spaces before them, mixed case.
HARD = "Grüße 😀 ✓ iPhone NASA McDonald \ue001 x  y\tz ünïcode 東京"


@pytest.fixture(scope="module")
def trained_models(tmp_path_factory: pytest.TempPathFactory, small_docs: list[str]) -> dict[str, Path]:
    """Every kind of SentencePiece model pgolf trains: BPE, unigram, CaseOps BPE."""
    folder = tmp_path_factory.mktemp("audit_models")
    docs = small_docs[:60]
    return {
        "bpe": train_sentencepiece(docs, 500, folder / "bpe.model"),
        "unigram": train_sentencepiece(docs, 500, folder / "unigram.model", "unigram"),
        "caseops": train_sentencepiece([caseops.encode(d) for d in docs], 500, folder / "caseops.model",
                                       user_symbols=caseops.OPERATORS),
    }


@pytest.mark.parametrize("spec", ["sp1024", "sp8192", "byte260", "bpe", "unigram", "caseops"])
def test_every_tokenizer_pgolf_trains_or_loads_passes(spec: str, trained_models: dict[str, Path], small_docs,
                                                      sp1024_path: Path, sp8192_path: Path) -> None:
    path = {"sp1024": sp1024_path, "sp8192": sp8192_path, "byte260": "byte260"}.get(spec) or trained_models[spec]
    tok = load_tokenizer(path)
    assert tok.needs_sidecar == (spec == "caseops")
    report = audit_tokenizer(tok, [*small_docs[100:130], HARD])
    assert report.ok, report.text()
    assert report.tokens_checked == tok.vocab_size and report.docs == 31
    assert report.counted_bytes == report.decoded_bytes > 0


def test_caseops_counts_original_bytes(trained_models: dict[str, Path]) -> None:
    tok = load_tokenizer(trained_models["caseops"])
    for text in ["Hello World", "iPhone and NASA", "esc \ue001\ue004 end", "McDonald's ÄBC"]:
        ids = np.array([1, *tok.encode_batch([text])[0]])
        assert int(tok.token_bytes(ids).sum()) == len(text.encode("utf-8"))  # the original, not the transformed
        assert tok.decode_bytes(ids[1:].tolist()) == text.encode("utf-8")
    with pytest.raises(DataError, match="must come from the val byte sidecar"):
        tok.byte_lut(500)


def _sp(path: Path) -> SentencePieceTokenizer:
    tok = load_tokenizer(path)
    assert isinstance(tok, SentencePieceTokenizer)
    return tok


def _tampered(path: Path, edit) -> SentencePieceTokenizer:
    tok = _sp(path)
    base, lead, boundary = (a.copy() for a in lut_arrays(tok.sp))
    edit(tok.sp, base, lead, boundary)
    return SentencePieceTokenizer(tok.path, tok.sp, (base, lead, boundary))


def test_scylla_byte_table_fails(sp1024_path: Path, small_docs: list[str]) -> None:
    # P2: byte-fallback tokens credited len(U+FFFD) = 3 bytes instead of 1.
    def scylla(sp, base, lead, boundary):
        base[[i for i in range(sp.vocab_size()) if sp.is_byte(i)]] = 3

    report = audit_tokenizer(_tampered(sp1024_path, scylla), [HARD])
    assert report.counts() == {"byte_fallback": 256, "document": 1}


def test_double_space_byte_fails(sp1024_path: Path) -> None:
    def double_space(sp, base, lead, boundary):
        base[lead] += 1  # the ▁ counted inside the piece and again as the leading space (#1632)

    report = audit_tokenizer(_tampered(sp1024_path, double_space), ["a b c"])
    spaced = int(lut_arrays(_sp(sp1024_path).sp)[1].sum())
    assert report.counts() == {"token": spaced, "document": 1}


def test_space_after_bos_fails(sp1024_path: Path) -> None:
    def no_boundary(sp, base, lead, boundary):
        boundary[:] = False  # a ▁ right after BOS credited a space the decoder drops

    report = audit_tokenizer(_tampered(sp1024_path, no_boundary), [" leading space"])
    spaced = int(lut_arrays(_sp(sp1024_path).sp)[1].sum())
    assert report.counts()["leading_space"] == spaced


def test_zero_byte_and_control_tokens_fail(sp1024_path: Path) -> None:
    def zero_and_control(sp, base, lead, boundary):
        base[sp.piece_to_id("ing")] = 0
        base[1] = 2  # BOS credited bytes

    report = audit_tokenizer(_tampered(sp1024_path, zero_and_control))
    assert set(report.counts()) == {"zero_byte", "control"}


def test_missing_space_piece_fails_and_blocks_builds(no_space_model: Path, tmp_path: Path, write_jsonl) -> None:
    tok = SentencePieceTokenizer(no_space_model, tables=lut_arrays(_sp(no_space_model).sp))
    report = audit_tokenizer(tok, ["abc abd"])
    assert report.counts() == {"missing_space_piece": 1}
    assert report.counted_bytes == 9 and report.source_bytes == 7  # the space counted as 3 bytes
    corpus = write_jsonl(tmp_path / "c.jsonl", ["abc abd", "abd abc abc", "dcba"])
    with pytest.raises(DataError, match=r"fails the byte-accounting audit .*--force"):
        build_dataset([corpus], tmp_path / "out", tokenizer=no_space_model, val_fraction=0.34)
    assert not (tmp_path / "out" / "datasets").exists() or not any((tmp_path / "out" / "datasets").iterdir())


def test_cli_audit_exit_codes(sp1024_path: Path, tmp_path: Path, write_jsonl, capsys) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", [HARD, "second document"])
    assert main(["data", "audit", str(sp1024_path), "--corpus", str(corpus)]) == 0
    assert "audit: PASS" in capsys.readouterr().out
    base, lead, boundary = lut_arrays(_sp(sp1024_path).sp)
    base = base.copy()
    base[4:260] = 3  # ids 4..259 are sp1024's byte tokens
    np.savez(tmp_path / "scylla.npz", base_bytes=base, has_leading_space=lead, is_boundary=boundary)
    assert main(["data", "audit", str(sp1024_path), "--lut", str(tmp_path / "scylla.npz")]) == 2
    captured = capsys.readouterr()
    assert "byte_fallback: 256" in captured.out and "fails the byte-accounting audit" in captured.err
    with pytest.raises(DataError, match=r"is not an \.npz with arrays"):
        load_lut_file(str(sp1024_path), corpus)


def test_tokenmonster_and_offline_tiktoken_errors_name_the_cause() -> None:
    with pytest.raises(DataError, match="tokenmonsterserver binary at first use and cannot run offline"):
        load_tokenizer("tokenmonster:english-1024.vocab")


def test_tiktoken_family_when_installed(tmp_path: Path, write_jsonl) -> None:
    tiktoken = pytest.importorskip("tiktoken")
    ranks = {bytes([i]): i for i in range(256)}
    for merge in (b"th", b"the", b" the", b"in", b"ing", b" a"):
        ranks[merge] = len(ranks)
    encoding = tiktoken.Encoding(name="tiny_test", pat_str=r"""'s|'t| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+""",
                                 mergeable_ranks=ranks, special_tokens={})
    from pgolf.data.tiktoken_bpe import TiktokenTokenizer

    tok = TiktokenTokenizer(encoding)
    assert tok.vocab_size == 4 + len(ranks)
    report = audit_tokenizer(tok, [HARD, "the thing in the ring"])
    assert report.ok, report.text()
