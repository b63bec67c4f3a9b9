"""Compressors: exact roundtrip, levels, and clear errors."""

from __future__ import annotations

import lzma
import os
import zlib

import brotli
import pytest
import zstandard

from pgolf.artifact.auto import compress_auto
from pgolf.artifact.codecs import CODEC_CHOICES, CODECS, compress, decompress
from pgolf.errors import ArtifactError

SAMPLES = [b"", b"x", bytes(range(256)) * 40 + os.urandom(3000)]
HAS_LRZIP = CODECS["lrzip"].available
# Every codec this machine can run: lrzip only where its Debian tool is installed.
RUNNABLE = sorted(name for name, codec in CODECS.items() if codec.available)


@pytest.mark.parametrize("codec", RUNNABLE)
@pytest.mark.parametrize("data", SAMPLES, ids=["empty", "one", "mixed"])
def test_roundtrip(codec: str, data: bytes) -> None:
    assert decompress(compress(data, codec), codec) == data


LIBRARY_CALLS = {
    "zlib": zlib.compress,
    "zstd": lambda d, lvl: zstandard.ZstdCompressor(level=lvl).compress(d),
    "lzma": lambda d, lvl: lzma.compress(d, check=lzma.CHECK_NONE, preset=lvl | lzma.PRESET_EXTREME),
    "brotli": lambda d, lvl: brotli.compress(d, quality=lvl, lgwin=24),
}


@pytest.mark.parametrize(("codec", "level"), [("zlib", 1), ("zstd", 3), ("lzma", 0), ("brotli", 5), ("zlib", None)])
def test_level_reaches_the_library(codec: str, level: int | None) -> None:
    data = SAMPLES[2]
    out = compress(data, codec, level)
    assert out == LIBRARY_CALLS[codec](data, CODECS[codec].default_level if level is None else level)
    assert decompress(out, codec) == data


def test_defaults_are_the_strongest_documented_levels() -> None:
    assert {name: c.default_level for name, c in CODECS.items()} == {"zlib": 9, "zstd": 22, "lzma": 9, "brotli": 11,
                                                                     "lrzip": 9}
    assert CODEC_CHOICES == ("zlib", "zstd", "lzma", "brotli", "lrzip", "auto")


def test_auto_needs_compress_auto() -> None:
    with pytest.raises(ArtifactError, match="compress_auto"):
        compress(b"abc", "auto")


def test_unknown_codec_lists_the_valid_ones() -> None:
    for call in (lambda: compress(b"abc", "gzip"), lambda: decompress(b"abc", "gzip")):
        with pytest.raises(ArtifactError, match="zlib, zstd, lzma, brotli, lrzip, auto"):
            call()


@pytest.mark.parametrize(("codec", "level"), [("zlib", 10), ("zstd", 23), ("lzma", -1), ("brotli", 12)])
def test_level_out_of_range(codec: str, level: int) -> None:
    with pytest.raises(ArtifactError, match="out of range"):
        compress(b"abc", codec, level)


@pytest.mark.parametrize("codec", RUNNABLE)
def test_corrupt_stream_raises_artifact_error(codec: str) -> None:
    with pytest.raises(ArtifactError, match=f"corrupt {codec}"):
        decompress(b"\x00garbage that is no stream at all" * 3, codec)


@pytest.mark.skipif(not HAS_LRZIP, reason="the lrzip tool is not installed (apt-get install lrzip)")
def test_lrzip_is_the_zpaq_backend_of_the_tool_and_auto_tries_it() -> None:
    data = bytes(range(256)) * 200 + os.urandom(5000)
    out = compress(data, "lrzip", 3)
    assert out[:4] == b"LRZI" and decompress(out, "lrzip") == data
    _, best = compress_auto(data)
    assert len(best) <= len(compress(data, "lrzip"))


def test_without_the_tool_lrzip_is_skipped_by_auto_and_refused_with_the_fix(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not CODECS["lrzip"].available
    assert compress_auto(b"abc" * 100)[0] != "lrzip"
    with pytest.raises(ArtifactError, match="needs the lrzip tool, which is not installed here: apt-get install lrzip"):
        decompress(b"LRZI0000", "lrzip")
    with pytest.raises(ArtifactError, match="needs the lrzip tool, which is not installed: apt-get install lrzip"):
        compress(b"abc", "lrzip")
