"""The byte-accounting audit (`pgolf data audit`): bytes the bpb code counts vs bytes the decoder produces.

val_bpb divides by the bytes a tokenizer's table credits to the scored tokens. Several records were
wrong because that table disagreed with the text (TECHNIQUES §2.7: P1 a missing `▁` piece, P2 byte
tokens credited 3 bytes, P3 CaseOps operators credited as text, a space byte counted twice). The
audit derives every token's bytes independently, from the decoder, and compares:

* vocabulary: each token between plain letters and right after BOS (the two contexts the §2.2
  rule distinguishes); byte-fallback tokens inside valid UTF-8 sequences, since a lone one decodes to
  U+FFFD; control tokens must count 0; no token that decodes to text may count 0.
* corpus: for every document, the sum of credited bytes equals the length of the decoded document.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgolf.data.families import BOS_ID, NUM_SPECIAL, SentencePieceTokenizer, Tokenizer, load_tokenizer
from pgolf.errors import DataError

MAX_LISTED = 8  # issues printed per kind
REFERENCE_TEXT = "a"  # a plain one-token text used as left and right context


@dataclass(frozen=True)
class AuditIssue:
    kind: str  # missing_space_piece | control | zero_byte | leading_space | byte_fallback | token | unknown | document
    detail: str
    token_id: int | None = None


@dataclass
class AuditReport:
    tokenizer: str
    vocab_size: int
    tokens_checked: int = 0
    issues: list[AuditIssue] = field(default_factory=list)
    docs: int = 0
    doc_tokens: int = 0
    counted_bytes: int = 0
    decoded_bytes: int = 0
    source_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.issues

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for issue in self.issues:
            counts[issue.kind] = counts.get(issue.kind, 0) + 1
        return counts

    def to_dict(self) -> dict[str, object]:
        return {
            "tokenizer": self.tokenizer, "vocab_size": self.vocab_size, "ok": self.ok,
            "tokens_checked": self.tokens_checked, "issue_counts": self.counts(),
            "issues": [vars(i) for i in self.issues[: MAX_LISTED * 8]],
            "docs": self.docs, "doc_tokens": self.doc_tokens, "counted_bytes": self.counted_bytes,
            "decoded_bytes": self.decoded_bytes, "source_bytes": self.source_bytes,
        }

    def text(self) -> str:
        lines = [f"tokenizer {self.tokenizer}: {self.vocab_size} ids, "
                 f"{self.tokens_checked} checked against the decoder"]
        if self.docs:
            lines.append(
                f"corpus: {self.docs} documents, {self.doc_tokens:,} tokens, counted {self.counted_bytes:,} bytes, "
                f"decoded {self.decoded_bytes:,} bytes, source text {self.source_bytes:,} bytes "
                f"({self.doc_tokens / max(self.counted_bytes, 1):.4f} tokens/byte)"
            )
        if self.ok:
            lines.append("audit: PASS (every counted byte matches the decoder)")
            return "\n".join(lines)
        lines.append(f"audit: FAIL ({', '.join(f'{k}: {n}' for k, n in sorted(self.counts().items()))})")
        shown: dict[str, int] = {}
        for issue in self.issues:
            shown[issue.kind] = shown.get(issue.kind, 0) + 1
            if shown[issue.kind] <= MAX_LISTED:
                lines.append(f"  {issue.kind}: {issue.detail}")
        return "\n".join(lines)


def audit_tokenizer(tok: Tokenizer, docs: Iterable[str] = (), threads: int = 1) -> AuditReport:
    """Vocabulary audit, plus the corpus audit over `docs` when given."""
    report = AuditReport(tok.name, tok.vocab_size)
    _audit_vocabulary(tok, report)
    _audit_corpus(tok, docs, report, threads)
    return report


def require_clean(report: AuditReport, force: bool) -> None:
    """Refuse to build shards with a tokenizer whose byte accounting is wrong, unless forced."""
    if not report.ok and not force:
        raise DataError(
            f"tokenizer {report.tokenizer} fails the byte-accounting audit "
            f"({', '.join(f'{k}: {n}' for k, n in sorted(report.counts().items()))}; "
            f"first: {report.issues[0].detail}): "
            "its val_bpb would be wrong; run `pgolf data audit` for details, fix the tokenizer, or pass --force"
        )


# ---- vocabulary -----------------------------------------------------------------------------------
def _audit_vocabulary(tok: Tokenizer, report: AuditReport) -> None:
    if isinstance(tok, SentencePieceTokenizer) and not tok.has_space_piece():
        report.issues.append(AuditIssue(
            "missing_space_piece", "no standalone '▁' piece: a lone space becomes 3 byte tokens credited 3 bytes (P1)"))
    ref = _reference_token(tok)
    ref_bytes, one_ref_bytes = len(tok.decode_bytes([ref, ref])), len(tok.decode_bytes([ref]))
    fallback = tok.byte_fallback_ids()
    fallback_ids = set(fallback.values())
    for token_id in range(tok.vocab_size):
        if token_id in fallback_ids:
            continue
        after_text = int(tok.token_bytes(np.array([BOS_ID, ref, token_id, ref]))[2])
        after_bos = int(tok.token_bytes(np.array([BOS_ID, token_id, ref]))[1])
        decoded_text = len(tok.decode_bytes([ref, token_id, ref])) - ref_bytes
        decoded_bos = len(tok.decode_bytes([token_id, ref])) - one_ref_bytes
        report.tokens_checked += 1
        issue = _token_issue(tok, token_id, after_text, after_bos, decoded_text, decoded_bos)
        if issue is not None:
            report.issues.append(issue)
    _audit_byte_fallback(tok, fallback, report)


def _reference_token(tok: Tokenizer) -> int:
    ids = tok.encode_batch([REFERENCE_TEXT])[0]
    if len(ids) != 1:
        raise DataError(f"tokenizer {tok.name} encodes {REFERENCE_TEXT!r} as {len(ids)} tokens: the audit needs one")
    return ids[0]


def _token_issue(tok: Tokenizer, token_id: int, after_text: int, after_bos: int,
                 decoded_text: int, decoded_bos: int) -> AuditIssue | None:
    label = _label(tok, token_id)
    if _is_special(tok, token_id):
        return _special_issue(tok, token_id, label, (after_text, after_bos), decoded_text)
    if after_text == 0 and decoded_text:  # a zero-byte operator (CaseOps) decodes to nothing and is fine
        return AuditIssue("zero_byte", f"{label} is credited 0 bytes but decodes to {decoded_text}", token_id)
    if (after_text, after_bos) == (decoded_text, decoded_bos):
        return None
    if after_text - after_bos != decoded_text - decoded_bos:
        return AuditIssue("leading_space", f"{label}: space byte credited {after_text - after_bos}, decoder "
                          f"gives {decoded_text - decoded_bos} (counted {after_text}/{after_bos} after text/BOS, "
                          f"decoded {decoded_text}/{decoded_bos})", token_id)
    return AuditIssue("token", f"{label}: counted {after_text} bytes, decoded {decoded_text}", token_id)


def _special_issue(tok: Tokenizer, token_id: int, label: str, credited: tuple[int, int],
                   decoded: int) -> AuditIssue | None:
    """Control and unknown tokens: credited no bytes (after text, after BOS), and lost text only with byte fallback."""
    if any(credited):
        return AuditIssue("control", f"{label} is a control token but is credited {credited[0]} bytes", token_id)
    if decoded and _is_unknown(tok, token_id):
        return _unknown_issue(tok, token_id, label, decoded)
    return None


def _unknown_issue(tok: Tokenizer, token_id: int, label: str, decoded: int) -> AuditIssue | None:
    """`<unk>` counts 0 bytes; that is exact only if byte fallback means it is never emitted."""
    if len(tok.byte_fallback_ids()) == 256:
        return None
    return AuditIssue("unknown", f"{label} is credited 0 bytes but stands for lost text (decodes to {decoded} "
                      "bytes) and the tokenizer has no byte fallback: train with byte_fallback=true", token_id)


def _is_special(tok: Tokenizer, token_id: int) -> bool:
    if isinstance(tok, SentencePieceTokenizer):
        sp = tok.sp
        return bool(sp.is_control(token_id) or sp.is_unknown(token_id) or sp.is_unused(token_id))
    return token_id < NUM_SPECIAL


def _is_unknown(tok: Tokenizer, token_id: int) -> bool:
    return isinstance(tok, SentencePieceTokenizer) and bool(tok.sp.is_unknown(token_id))


def _label(tok: Tokenizer, token_id: int) -> str:
    if isinstance(tok, SentencePieceTokenizer):
        return f"id {token_id} {tok.sp.id_to_piece(token_id)!r}"
    return f"id {token_id}"


def _utf8_context(byte: int) -> list[int] | None:
    """A shortest valid UTF-8 sequence containing `byte` (None for bytes valid UTF-8 never holds)."""
    if byte < 0x80:
        return [byte]
    if byte < 0xC0:
        return [0xC2, byte]
    if 0xC2 <= byte < 0xE0:
        return [byte, 0x80]
    if 0xE0 <= byte < 0xF0:
        return [byte, 0xA0 if byte == 0xE0 else 0x80, 0x80]
    if 0xF0 <= byte < 0xF5:
        return [byte, 0x90 if byte == 0xF0 else 0x80, 0x80, 0x80]
    return None


def _audit_byte_fallback(tok: Tokenizer, fallback: dict[int, int], report: AuditReport) -> None:
    """Each `<0xNN>` token stands for exactly one source byte (pitfall P2), alone and inside a character."""
    for byte, token_id in sorted(fallback.items()):
        report.tokens_checked += 1
        counted = int(tok.token_bytes(np.array([BOS_ID, token_id]))[1])
        problem = f"credited {counted}" if counted != 1 else ""
        context = _utf8_context(byte)  # None: valid text never holds this byte
        ids = [fallback[b] for b in context] if context is not None and all(b in fallback for b in context) else None
        if context is not None and ids is not None:
            decoded = len(tok.decode_bytes(ids))
            in_sequence = int(tok.token_bytes(np.array([BOS_ID, *ids]))[1:].sum())
            if (decoded, in_sequence) != (len(context), len(context)):
                problem = f"the UTF-8 sequence {bytes(context)!r} decodes to {decoded} bytes, credited {in_sequence}"
        if problem:
            report.issues.append(AuditIssue(
                "byte_fallback", f"{_label(tok, token_id)} stands for 1 source byte: {problem}", token_id))


# ---- corpus ---------------------------------------------------------------------------------------
def _audit_corpus(tok: Tokenizer, docs: Iterable[str], report: AuditReport, threads: int, batch: int = 256) -> None:
    pending: list[str] = []
    for text in docs:
        pending.append(text)
        if len(pending) == batch:
            _audit_batch(tok, pending, report, threads)
            pending = []
    if pending:
        _audit_batch(tok, pending, report, threads)


def _audit_batch(tok: Tokenizer, texts: list[str], report: AuditReport, threads: int) -> None:
    for text, ids in zip(texts, tok.encode_batch(texts, threads), strict=True):
        counted = int(tok.token_bytes(np.array([BOS_ID, *ids], dtype=np.int64)).sum())
        decoded = len(tok.decode_bytes(ids))
        report.docs += 1
        report.doc_tokens += len(ids)
        report.counted_bytes += counted
        report.decoded_bytes += decoded
        report.source_bytes += len(text.encode("utf-8"))
        if counted != decoded:
            report.issues.append(AuditIssue(
                "document", f"document {report.docs - 1} ({text[:40]!r}…): counted {counted} bytes, "
                f"decoder gives {decoded}"))


LUT_KEYS = ("base_bytes", "has_leading_space", "is_boundary")


def load_lut_file(tokenizer: str, lut_path: Path) -> SentencePieceTokenizer:
    """A SentencePiece tokenizer whose byte counts come from an external table, so that table can be audited."""
    tok = load_tokenizer(tokenizer)
    if not isinstance(tok, SentencePieceTokenizer) or tok.needs_sidecar:
        raise DataError(f"--lut audits a byte table of a plain SentencePiece tokenizer; {tok.name} is not one")
    if not lut_path.is_file():
        raise DataError(f"byte table {lut_path} does not exist: pass an .npz with arrays {', '.join(LUT_KEYS)}")
    try:
        with np.load(lut_path, allow_pickle=False) as table:
            arrays = [np.asarray(table[key]) for key in LUT_KEYS]
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"byte table {lut_path} is not an .npz with arrays {', '.join(LUT_KEYS)} ({exc})") from None
    if any(a.ndim != 1 or a.size < tok.vocab_size for a in arrays):
        raise DataError(f"byte table {lut_path}: every array needs ≥ {tok.vocab_size} entries (one per token id)")
    base, lead, boundary = (a[: tok.vocab_size] for a in arrays)
    return SentencePieceTokenizer(tok.path, tok.sp, (base.astype(np.int64), lead.astype(bool), boundary.astype(bool)))
