"""Codec `auto`: every candidate codec tried on the data, the smallest output kept (its name goes into the
artifact's header, so reading needs nothing of this module).

Only runs whose codec is `auto` import it, so only their exported scripts ship it.
"""

from __future__ import annotations

from collections.abc import Iterable

from pgolf.artifact.codecs import CODECS, compress
from pgolf.errors import ArtifactError


def auto_candidates(candidates: Iterable[str] | None = None) -> list[str]:
    """The codecs `auto` tries, in the order that breaks ties: `candidates`, by default every codec whose tool is
    installed."""
    names = list(candidates) if candidates is not None else [n for n, c in CODECS.items() if c.available]
    if not names:
        raise ArtifactError("codec 'auto' got no candidate codecs: pass at least one of " + ", ".join(CODECS))
    return names


def smallest(trials: Iterable[tuple[str, bytes]]) -> tuple[str, bytes]:
    """The (codec, output) trial with the fewest bytes; ties go to the earlier trial, so the choice is
    deterministic."""
    return min(trials, key=lambda trial: len(trial[1]))


def compress_auto(data: bytes, candidates: Iterable[str] | None = None) -> tuple[str, bytes]:
    """Try every candidate (`auto_candidates`) at its default level; return the `smallest` (winner, bytes)."""
    return smallest((name, compress(data, name)) for name in auto_candidates(candidates))
