"""Multi-stream payloads: the parts of a transformed payload, each compressed as its own stream.

The SOTA record (records/2026-04-27, #1855) compresses each role group of its int-k codes as its own
lrzip stream, and its row orders and remainder as brotli streams. pgolf does the same for the `grouped`
transform (`grouping.grouped_segments` names the parts): every stream uses the configured codec, or with
`auto` the smallest of the installed codecs for that stream alone (so lrzip for the code groups and a
Python codec for the small ones, where lrzip is installed). A part under `MIN_STREAM` bytes joins the
stream before it, as a stream of its own would cost more in framing than it saves. The streams are
compressed in parallel threads (lrzip runs as a subprocess, the Python codecs release the GIL); with `auto`,
each stream under each codec is a trial of its own (`compress_auto_each`).

The header lists each stream as `[codec, compressed bytes]`; the payload is their concatenation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pgolf.artifact.codecs import AUTO, compress, decompress, get_codec
from pgolf.errors import ArtifactError

MIN_STREAM = 4096
# Compressions at once: enough that `auto` at sota's full size is bound by its longest trial (its ~280 s of trials
# over 8 threads, against ~41 s for lrzip on the largest group, on one 2-core machine's timings), few enough to
# bound the memory (lzma -9e alone takes ~0.7 GB a compressor).
MAX_THREADS = 8
Streams = list[tuple[str, int]]
_T = TypeVar("_T")
_R = TypeVar("_R")


def stream_sizes(parts: Sequence[int]) -> list[int]:
    """Raw sizes of the streams for parts of these sizes: a part under MIN_STREAM joins the stream before it
    (the first one joins the next); empty streams are dropped."""
    sizes: list[int] = []
    for size in parts:
        if sizes and (size < MIN_STREAM or sizes[-1] < MIN_STREAM):
            sizes[-1] += size
        else:
            sizes.append(size)
    return [s for s in sizes if s]


def _parallel(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    if len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(len(items), os.cpu_count() or 1, MAX_THREADS)) as pool:
        return list(pool.map(fn, items))


def _split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    out, cursor = [], 0
    for size in sizes:
        out.append(data[cursor : cursor + size])
        cursor += size
    return out


def compress_streams(coded: bytes, parts: Sequence[int], codec: str, level: int | None) -> tuple[Streams, bytes]:
    """(stream table, payload) of `coded` cut into `parts` (byte sizes summing to its length)."""
    if sum(parts) != len(coded):
        raise ArtifactError(f"payload parts cover {sum(parts)} bytes of {len(coded)}: a pgolf bug, please report it")

    pieces = _split(coded, stream_sizes(parts))
    results = compress_auto_each(pieces) if codec == AUTO else \
        _parallel(lambda part: (codec, compress(part, codec, level)), pieces)
    return [(name, len(out)) for name, out in results], b"".join(out for _, out in results)


def compress_auto_each(parts: Sequence[bytes], candidates: Sequence[str] | None = None) -> list[tuple[str, bytes]]:
    """`auto.compress_auto` of every part. The trials (each part under each codec) run in parallel threads, the
    largest parts first, so the slowest codec on the largest part, not a part's whole chain of codecs, bounds the
    time where there are enough CPUs."""
    from pgolf.artifact.auto import auto_candidates, smallest  # shipped only with runs whose codec is auto

    names = auto_candidates(candidates)
    trials = sorted(((i, name) for i in range(len(parts)) for name in names), key=lambda t: -len(parts[t[0]]))
    outputs = dict(zip(trials, _parallel(lambda t: compress(parts[t[0]], t[1]), trials), strict=True))
    return [smallest((name, outputs[i, name]) for name in names) for i in range(len(parts))]


def decompress_streams(payload: bytes, streams: Streams) -> bytes:
    """Inverse of `compress_streams`: the concatenated decompressed streams."""
    codecs = [name for name, _ in streams]
    pieces = list(zip(codecs, _split(payload, [size for _, size in streams]), strict=True))
    return b"".join(_parallel(lambda item: decompress(item[1], item[0]), pieces))


def parse_streams(obj: Any, payload_bytes: int) -> Streams:
    """The header's stream table, checked: [codec, bytes] pairs of known codecs covering the payload."""
    ok = isinstance(obj, list) and all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], int)
        and not isinstance(s[1], bool) and s[1] >= 0 for s in obj)
    if not ok or sum(s[1] for s in obj) != payload_bytes:
        raise ArtifactError("artifact header: the stream table is malformed or does not cover the payload; "
                            "re-create the artifact")
    for name, _ in obj:
        get_codec(name)
    return [(name, size) for name, size in obj]


def main_codec(streams: Streams, default: str) -> str:
    """The codec of the largest stream (what the artifact is reported as); `default` when there is none."""
    return max(streams, key=lambda s: s[1])[0] if streams else default
