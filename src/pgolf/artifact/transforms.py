"""Reversible byte transforms applied to the raw payload before the codec (TECHNIQUES §4.9).

The payload is a sequence of regions (each tensor's codes, then its scales). A transform rewrites
each region independently, so the tensor table alone says how to undo it:

* ``none``      — bytes unchanged.
* ``byteplane`` — a region of n items of k > 1 bytes becomes its k byte planes (all first bytes, then
  all second bytes, …): the "byte shuffle" that helps fp16/fp32 data compress.
* ``bitpack``   — as ``byteplane``, and int-k codes with k < 8 are packed densely, k bits per code
  (code + 2^(k−1) as an unsigned k-bit number, little-endian bit order).
* ``bykind``    — as ``byteplane``, with every int-k code region first (in model order), then the scales and
  float tensors: the order of the records' ``torch.save`` dicts (codes, scales, passthrough), which
  compresses better than codes interleaved with floats (#635's tensors under zstd-22: 1.9% below its file).
* ``grouped``   — the SOTA record's per-group layout (`pgolf.artifact.grouping`): code matrices of one
  role across layers side by side, transposed, some with similarity-sorted rows; the rest byte planes.

Whether a transform helps depends on the codec; `auto` (in `format`) tries them and keeps the smallest.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pgolf.artifact.format import TRANSFORMS
from pgolf.errors import ArtifactError

_CHUNK = 1 << 20  # codes per bit-packing step, bounding the temporary bit matrix


@dataclass(frozen=True)
class Region:
    """One payload region: `numel` items of `itemsize` bytes; `code_bits` < 8 marks int-k codes.

    `group` names the role of an int-k code matrix of `rows` rows (`grouped` lays those out by role).
    """

    itemsize: int
    numel: int
    code_bits: int | None = None
    rows: int = 0
    group: str = ""

    @property
    def nbytes(self) -> int:
        return self.itemsize * self.numel

    def coded_bytes(self, transform: str) -> int:
        bits = self.packed_bits
        if transform == "bitpack" and bits is not None:
            return (self.numel * bits + 7) // 8
        return self.nbytes

    @property
    def packed_bits(self) -> int | None:
        """The code width when `bitpack` packs this region (int-k codes stored one per byte), else None."""
        if self.code_bits is not None and self.code_bits < 8 and self.itemsize == 1:
            return self.code_bits
        return None


def _planes(data: bytes, itemsize: int) -> bytes:
    return np.frombuffer(data, np.uint8).reshape(-1, itemsize).T.tobytes()


def _unplanes(data: bytes, itemsize: int) -> bytes:
    return np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.tobytes()


def _planes_of(data: bytes, itemsize: int) -> bytes:
    return _planes(data, itemsize) if itemsize > 1 else data


def _unplanes_of(data: bytes, itemsize: int) -> bytes:
    return _unplanes(data, itemsize) if itemsize > 1 else data


def _pack_codes(data: bytes, bits: int) -> bytes:
    codes = np.frombuffer(data, np.int8).astype(np.int16)
    offset = 1 << (bits - 1)
    if codes.size and (codes.min() < -offset or codes.max() >= offset):
        raise ArtifactError(f"int{bits} codes outside [{-offset}, {offset - 1}] cannot be bit-packed; "
                            "re-quantize the tensor or use transform 'none'")
    unsigned = (codes + offset).astype(np.uint8)
    shifts = np.arange(bits, dtype=np.uint8)
    parts = [((unsigned[i : i + _CHUNK, None] >> shifts) & 1).astype(np.uint8).reshape(-1)
             for i in range(0, unsigned.size, _CHUNK)]
    return np.packbits(np.concatenate(parts) if parts else np.zeros(0, np.uint8), bitorder="little").tobytes()


def _unpack_codes(data: bytes, bits: int, numel: int) -> bytes:
    flat = np.unpackbits(np.frombuffer(data, np.uint8), count=numel * bits, bitorder="little")
    weights = (1 << np.arange(bits, dtype=np.int16))
    out = np.empty(numel, np.int8)
    for i in range(0, numel, _CHUNK):
        block = flat[i * bits : min(numel, i + _CHUNK) * bits].reshape(-1, bits).astype(np.int16)
        out[i : i + _CHUNK] = (block @ weights - (1 << (bits - 1))).astype(np.int8)
    return out.tobytes()


def _map_regions(data: bytes, regions: Sequence[Region], sizes: Sequence[int],
                 fn: Callable[[bytes, Region], bytes]) -> bytes:
    out, cursor = [], 0
    for region, size in zip(regions, sizes, strict=True):
        out.append(fn(data[cursor : cursor + size], region))
        cursor += size
    return b"".join(out)


def _check(transform: str) -> None:
    if transform not in TRANSFORMS:
        raise ArtifactError(f"unknown payload transform {transform!r}: use one of {', '.join(TRANSFORMS)} or auto")


def apply_transform(raw: bytes, regions: Sequence[Region], transform: str) -> bytes:
    """The transformed payload (same region order)."""
    _check(transform)
    if transform == "none":
        return raw
    if transform == "grouped":
        from pgolf.artifact.grouping import group_payload  # only runs that pack grouped import (and ship) it

        return group_payload(raw, regions, _planes_of)

    def one(chunk: bytes, region: Region) -> bytes:
        bits = region.packed_bits
        if transform == "bitpack" and bits is not None:
            return _pack_codes(chunk, bits)
        return _planes(chunk, region.itemsize) if region.itemsize > 1 else chunk

    if transform == "bykind":
        chunks = _split(raw, [r.nbytes for r in regions])
        return b"".join(_planes_of(chunks[i], regions[i].itemsize) for i in _kind_order(regions))
    return _map_regions(raw, regions, [r.nbytes for r in regions], one)


def _kind_order(regions: Sequence[Region]) -> list[int]:
    """Region indices with the int-k code regions first, each kind in payload order."""
    return sorted(range(len(regions)), key=lambda i: regions[i].code_bits is None)


def _split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    return [data[a:b] for a, b in itertools.pairwise(itertools.accumulate(sizes, initial=0))]


def invert_transform(coded: bytes, regions: Sequence[Region], transform: str) -> bytes:
    """The raw payload; ArtifactError when `coded` has the wrong length for the tensor table."""
    _check(transform)
    if transform == "grouped":
        from pgolf.artifact.grouping import ungroup_payload

        return ungroup_payload(coded, regions, _unplanes_of)
    sizes = [r.coded_bytes(transform) for r in regions]
    if len(coded) != sum(sizes):
        raise ArtifactError(f"{transform} payload is {len(coded)} bytes but the tensor table needs {sum(sizes)}: "
                            "the file is damaged; re-create it with `pgolf pack`")
    if transform == "none":
        return coded
    if transform == "bykind":
        order = _kind_order(regions)
        chunks = dict(zip(order, _split(coded, [sizes[i] for i in order]), strict=True))
        return b"".join(_unplanes_of(chunks[i], regions[i].itemsize) for i in range(len(regions)))

    def one(chunk: bytes, region: Region) -> bytes:
        bits = region.packed_bits
        if transform == "bitpack" and bits is not None:
            return _unpack_codes(chunk, bits, region.numel)
        return _unplanes(chunk, region.itemsize) if region.itemsize > 1 else chunk

    return _map_regions(coded, regions, sizes, one)
