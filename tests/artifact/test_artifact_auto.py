"""Codec `auto`: the smallest output of the candidates, and a clear error without candidates."""

from __future__ import annotations

import os

import pytest

from pgolf.artifact.auto import compress_auto
from pgolf.artifact.codecs import CODECS, compress, decompress
from pgolf.errors import ArtifactError

RUNNABLE = sorted(name for name, codec in CODECS.items() if codec.available)


def test_auto_is_never_larger_than_the_best_single_codec() -> None:
    data = bytes(range(256)) * 200 + os.urandom(5000)
    winner, out = compress_auto(data)
    sizes = {name: len(compress(data, name)) for name in RUNNABLE}
    assert len(out) == min(sizes.values())
    assert sizes[winner] == len(out)
    assert decompress(out, winner) == data


def test_no_candidates_is_refused() -> None:
    with pytest.raises(ArtifactError, match="no candidate"):
        compress_auto(b"abc", candidates=())
