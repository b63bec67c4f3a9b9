"""CaseOps: the lossless case transform of TECHNIQUES §4.24, applied to text before SentencePiece.

Maximal runs of ASCII letters are lowercased and their case is written as operator characters:
TITLE (U+E001) before a run whose first letter is the only capital (or that starts a mixed-case
run), ALLCAPS (U+E002) before an all-capital run of two or more letters, CAPNEXT (U+E003) before
each later capital of a mixed-case run. A literal operator character in the text is escaped with
ESC (U+E004). `decode(encode(t)) == t` for every string. Non-ASCII letters are left alone.
"""

from __future__ import annotations

import re

import sentencepiece as spm

from pgolf.errors import DataError

TITLE, ALLCAPS, CAPNEXT, ESC = "\ue001", "\ue002", "\ue003", "\ue004"
OPERATORS = (TITLE, ALLCAPS, CAPNEXT, ESC)

_ENCODE_UNITS = re.compile("[A-Za-z]+|[\ue001-\ue004]")
_DECODE_UNITS = re.compile("\ue004(.)|\ue002([a-z]+)|[\ue001\ue003]([a-z])", re.DOTALL)


def _encode_unit(match: re.Match[str]) -> str:
    run = match.group()
    if run in OPERATORS:
        return ESC + run
    if run.islower():
        return run
    lower = run.lower()
    if len(run) >= 2 and run.isupper():
        return ALLCAPS + lower
    if run[0].isupper() and (len(run) == 1 or run[1:].islower()):
        return TITLE + lower
    head = (TITLE if run[0].isupper() else "") + lower[0]
    return head + "".join(CAPNEXT + low if ch.isupper() else low for ch, low in zip(run[1:], lower[1:], strict=True))


def _decode_unit(match: re.Match[str]) -> str:
    escaped, caps_run, one_letter = match.groups()
    if escaped is not None:
        return escaped
    if caps_run is not None:
        return caps_run.upper()
    return one_letter.upper()


def encode(text: str) -> str:
    """The transformed text that the CaseOps tokenizer is trained on and encodes."""
    return _ENCODE_UNITS.sub(_encode_unit, text)


def decode(text: str) -> str:
    """The original text of a transformed string (the exact inverse of `encode`)."""
    return _DECODE_UNITS.sub(_decode_unit, text)


def operator_ids(sp: spm.SentencePieceProcessor, required: bool = True) -> dict[str, int]:
    """{operator: id} when all four operators are pieces `sp` always keeps whole, else {} (or an error).

    User-defined symbols are never merged with neighbours, so each operator must come out of
    encoding as its own piece between letters and next to another operator.
    """
    ids = {op: sp.piece_to_id(op) for op in OPERATORS}
    if all(i != sp.unk_id() and sp.encode(f"a{op}b{op}{op}").count(i) == 3 for op, i in ids.items()):
        return ids
    if required:
        raise DataError(
            "tokenizer lacks the CaseOps operators U+E001..U+E004 as user-defined pieces: train it with "
            "`pgolf data build --caseops`"
        )
    return {}
