"""Byte compressors for the artifact payload: zlib, zstd, lzma, brotli, lrzip, and `auto` (smallest wins).

Defaults follow the records (TECHNIQUES §4.9): zlib 9 (baseline), zstd 22, brotli quality 11, and lzma
preset 9 | PRESET_EXTREME — the strongest xz setting, chosen because only the size matters here and
decompression of a 16 MB payload stays well under a second. The xz stream carries no integrity check
of its own (CHECK_NONE): the artifact header already holds sha256 digests of the compressed and raw
payloads, so a CRC would only cost bytes.

`lrzip` is the ZPAQ back-end of the Debian `lrzip` tool (`lrzip -z -L 9`, as the SOTA record's per-group
stream, plus `-T`), run as a subprocess (`pgolf.artifact.lrzip`, imported on first use). `-T` skips
lrzip's LZ4 compressibility test: without it lrzip stores a chunk uncompressed whenever LZ4 finds no
repeats, which is the case for int-k codes without structure (synthetic weights came out at their raw
size), while ZPAQ's context mixing still saves a third of them; where the test passes, the output is
the same either way. It is optional: `auto` tries it only where the tool is installed, so on a machine
without it `auto` falls back to the Python codecs. An lrzip artifact needs the tool to be read as well;
where it is missing, reading refuses with the install command (the eval machine must have it:
`apt-get install lrzip`, as the record's README asks).
"""

from __future__ import annotations

import lzma
import shutil
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import brotli
import zstandard

from pgolf.errors import ArtifactError

AUTO = "auto"


@dataclass(frozen=True)
class Codec:
    name: str
    default_level: int
    min_level: int
    max_level: int
    compress_fn: Callable[[bytes, int], bytes]
    decompress_fn: Callable[[bytes], bytes]
    errors: tuple[type[BaseException], ...]
    tool: str | None = None  # an external program the codec runs; None: pure Python

    @property
    def available(self) -> bool:
        return self.tool is None or shutil.which(self.tool) is not None


def _lzma_compress(data: bytes, level: int) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, preset=level | lzma.PRESET_EXTREME)


def _zstd_compress(data: bytes, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    # Frames written by ZstdCompressor.compress carry their content size; stream-read otherwise.
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


LRZIP = "lrzip"


class LrzipError(Exception):
    """lrzip ran and failed (a corrupt stream when decompressing)."""


def _lrzip_compress(data: bytes, level: int) -> bytes:
    from pgolf.artifact.lrzip import run_lrzip  # the tool's runner ships only with runs that can pick lrzip

    return run_lrzip(["-z", "-T", "-L", str(level)], data, "")


def _lrzip_decompress(data: bytes) -> bytes:
    from pgolf.artifact.lrzip import run_lrzip

    return run_lrzip(["-d"], data, ".lrz")


CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("zlib", 9, 0, 9, zlib.compress, zlib.decompress, (zlib.error,)),
        Codec("zstd", 22, 1, 22, _zstd_compress, _zstd_decompress, (zstandard.ZstdError,)),
        Codec("lzma", 9, 0, 9, _lzma_compress, lzma.decompress, (lzma.LZMAError, EOFError)),
        Codec("brotli", 11, 0, 11, lambda d, q: brotli.compress(d, quality=q, lgwin=24), brotli.decompress,
              (brotli.error,)),
        Codec(LRZIP, 9, 1, 9, _lrzip_compress, _lrzip_decompress, (LrzipError,), tool=LRZIP),
    )
}
CODEC_CHOICES: tuple[str, ...] = (*CODECS, AUTO)


def get_codec(name: str) -> Codec:
    """The registered codec called `name`; ArtifactError naming the valid ones otherwise."""
    try:
        return CODECS[name]
    except KeyError:
        raise ArtifactError(f"unknown codec {name!r}: use one of {', '.join(CODEC_CHOICES)}") from None


def resolve_level(codec: Codec, level: int | None) -> int:
    if level is None:
        return codec.default_level
    if not codec.min_level <= level <= codec.max_level:
        raise ArtifactError(
            f"{codec.name} level {level} is out of range: use {codec.min_level}..{codec.max_level} "
            f"(default {codec.default_level})"
        )
    return level


def compress(data: bytes, codec: str = "zlib", level: int | None = None) -> bytes:
    """Compress with one named codec (its default level when `level` is None).

    `auto` is not accepted here because its caller must learn which codec won: use `auto.compress_auto`.
    """
    if codec == AUTO:
        raise ArtifactError("codec 'auto' needs compress_auto() (pgolf.artifact.auto), which also returns the "
                            "winning codec")
    spec = get_codec(codec)
    return spec.compress_fn(data, resolve_level(spec, level))


def decompress(data: bytes, codec: str) -> bytes:
    """Inverse of `compress`; a corrupt stream raises ArtifactError."""
    spec = get_codec(codec)
    if not spec.available:
        raise ArtifactError(f"this payload is {codec}-compressed and reading it needs the {spec.tool} tool, which is "
                            f"not installed here: apt-get install {spec.tool} (every machine that evaluates the "
                            "artifact needs it), or re-pack with a Python codec "
                            "(quant.codec = brotli, lzma, zstd, zlib)")
    try:
        return spec.decompress_fn(data)
    except spec.errors as exc:
        raise ArtifactError(
            f"corrupt {codec} stream ({exc}): the file is damaged; re-create it with `pgolf pack`"
        ) from exc
