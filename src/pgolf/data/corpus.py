"""Reading text documents: `.jsonl` (one {"text": ...} per line) and `.txt` (one document per file).

Decoding is strict UTF-8 unless `replace_invalid` is set: a bad byte raises DataError naming the file
and its byte offset. A `Corpus` is a list of files plus an optional prefix (`max_docs`,
`max_bytes`), and can be iterated as many times as a build needs.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pgolf.errors import DataError

PathInput = str | os.PathLike[str]


def expand_inputs(patterns: Iterable[PathInput]) -> list[Path]:
    """Expand glob patterns and folders (their .jsonl/.txt files), sorted; keep plain paths as given."""
    files: list[Path] = []
    for pattern in patterns:
        files.extend(_expand_one(os.fspath(pattern)))
    if not files:
        raise DataError("no input files found: pass --input with .jsonl or .txt files (or a folder of them)")
    return files


def _expand_one(text: str) -> list[Path]:
    path = Path(text)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
    if path.exists() or not glob.has_magic(text):
        return [path]
    matches = sorted(glob.glob(text))
    if not matches:
        raise DataError(f"input pattern {text} matches no files: check the path or quote the glob")
    return [Path(m) for m in matches]


@dataclass(frozen=True)
class Corpus:
    """Documents of `files` in order, cut to a prefix of `max_docs` documents / `max_bytes` UTF-8 bytes (0 = all)."""

    files: tuple[Path, ...]
    max_docs: int = 0
    max_bytes: int = 0
    replace_invalid: bool = False

    @classmethod
    def of(cls, inputs: Iterable[PathInput], max_docs: int = 0, max_bytes: int = 0,
           replace_invalid: bool = False) -> Corpus:
        if max_docs < 0 or max_bytes < 0:
            raise DataError(f"--max-docs {max_docs} / --max-bytes {max_bytes} must be ≥ 0 (0 = no limit)")
        return cls(tuple(expand_inputs(inputs)), max_docs, max_bytes, replace_invalid)

    def __iter__(self) -> Iterator[str]:
        total = 0
        for count, text in enumerate(read_documents(self.files, self.replace_invalid)):
            if self.max_docs and count >= self.max_docs:
                return
            total += len(text.encode("utf-8"))
            if self.max_bytes and total > self.max_bytes and count > 0:
                return
            yield text

    def describe(self) -> dict[str, object]:
        return {"files": [str(f) for f in self.files], "max_docs": self.max_docs, "max_bytes": self.max_bytes,
                "replace_invalid": self.replace_invalid}


def read_documents(paths: Iterable[PathInput], replace_invalid: bool = False) -> Iterator[str]:
    """Yield the documents of the given files (globs and folders expanded)."""
    count = 0
    for path in expand_inputs(paths):
        reader = _SUFFIXES.get(path.suffix.lower())
        if reader is None:
            raise DataError(f"input {path} has unsupported type {path.suffix!r}: use .jsonl or .txt files")
        if not path.is_file():
            raise DataError(f"input {path} does not exist: check the path")
        for text in reader(path, replace_invalid):
            count += 1
            yield text
    if count == 0:
        raise DataError(
            'the corpus has no documents: give .jsonl files with {"text": ...} lines or non-empty .txt files'
        )


def _read_jsonl(path: Path, replace_invalid: bool) -> Iterator[str]:
    offset = 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            line = _decode(raw, path, offset, replace_invalid)
            offset += len(raw)
            if line.strip():
                yield _jsonl_text(line, path, line_no)


def _jsonl_text(line: str, path: Path, line_no: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(
            f'{path} line {line_no} is not valid JSON ({exc.msg}): write one {{"text": ...}} object per line'
        ) from exc
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f'{path} line {line_no} has no string "text" field: write one {{"text": ...}} object per line')
    return record["text"]


def _read_txt(path: Path, replace_invalid: bool) -> Iterator[str]:
    yield _decode(path.read_bytes(), path, 0, replace_invalid)


def _decode(raw: bytes, path: Path, base_offset: int, replace_invalid: bool) -> str:
    if replace_invalid:
        return raw.decode("utf-8", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8: bad byte 0x{raw[exc.start]:02x} at byte offset {base_offset + exc.start}: "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or pass --replace-invalid to read it "
            "with U+FFFD in place of bad bytes"
        ) from exc


_SUFFIXES = {".jsonl": _read_jsonl, ".txt": _read_txt}
