"""The `grouped` payload layout of the SOTA record's per-group compression (records/2026-04-27, #1855).

Int-k code matrices of the same role in every layer (`blocks.<i>.attn.c_q.weight` for all i, the
embedding, ...) are laid out next to each other, each one transposed (column-major), so that the codec
sees similar columns side by side; the rows of the roles in `SORTED_GROUPS` are first put in greedy
L1 nearest-neighbour order (start at row 0, always step to the closest unused row, ties to the lowest
index), and that order is stored as uint16 row indices after the grouped codes. Everything else
follows byte-plane split, in payload order. `grouped_segments` names the layout's parts (one per role,
then the row orders, then the rest): the artifact compresses each as its own stream, as the record
compresses each group as its own lrzip stream (`pgolf.artifact.streams`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pgolf.errors import ArtifactError

if TYPE_CHECKING:
    from pgolf.artifact.transforms import Region

SORTED_GROUPS = ("tok_emb.weight", "attn.c_q.weight", "mlp.fc.weight")  # the record's similarity-sorted roles
_ORDER_DTYPE = np.uint16


def similarity_order(matrix: np.ndarray) -> np.ndarray:
    """Greedy nearest-neighbour row order by L1 distance, from row 0 (the record's `_similarity_sort_l1`).

    The unused rows live at the front of one float32 buffer (exact: L1 sums of int8 codes stay far below
    2**24); a chosen row's slot takes the last unused row, so each step reads only the rows still unused and
    allocates nothing. That reorders the candidates, so a tie goes to the lowest original index explicitly.
    """
    pool = torch.from_numpy(matrix.astype(np.float32))
    ids = torch.arange(pool.shape[0])
    scratch, dist = torch.empty_like(pool), torch.empty(pool.shape[0])
    order = [0]
    current = pool[0].clone()
    unused = pool.shape[0] - 1
    pool[0], ids[0] = pool[unused], ids[unused]
    while unused:
        live, d = pool[:unused], dist[:unused]
        torch.sum(torch.sub(live, current, out=scratch[:unused]).abs_(), 1, out=d)
        nearest = (d == d.min()).nonzero()[:, 0]
        k = int(nearest[ids[nearest].argmin()])
        order.append(int(ids[k]))
        current.copy_(live[k])
        unused -= 1
        pool[k], ids[k] = pool[unused], ids[unused]
    return np.asarray(order, dtype=_ORDER_DTYPE)


def _sorted(region: Region) -> bool:
    return region.group in SORTED_GROUPS and region.rows <= np.iinfo(_ORDER_DTYPE).max + 1


def _plan(regions: Sequence[Region]) -> tuple[list[int], list[int]]:
    """(indices of grouped regions in layout order, indices of the other regions in payload order)."""
    groups: dict[str, list[int]] = {}
    rest = []
    for i, region in enumerate(regions):
        if region.group:
            groups.setdefault(region.group, []).append(i)
        else:
            rest.append(i)
    return [i for members in groups.values() for i in members], rest


def _offsets(regions: Sequence[Region]) -> list[int]:
    offsets, cursor = [], 0
    for region in regions:
        offsets.append(cursor)
        cursor += region.nbytes
    return offsets


def grouped_size(regions: Sequence[Region]) -> int:
    """Bytes of the grouped layout: the payload plus the stored row orders."""
    return sum(grouped_segments(regions))


def grouped_segments(regions: Sequence[Region]) -> list[int]:
    """Byte sizes of the grouped layout's parts, in layout order: each role's codes, the row orders, the rest."""
    groups: dict[str, int] = {}
    for region in regions:
        if region.group:
            groups[region.group] = groups.get(region.group, 0) + region.nbytes
    orders = sum(r.rows * _ORDER_DTYPE().itemsize for r in regions if r.group and _sorted(r))
    rest = sum(r.nbytes for r in regions if not r.group)
    return [*groups.values(), orders, rest]


def group_payload(raw: bytes, regions: Sequence[Region], planes: Callable[[bytes, int], bytes]) -> bytes:
    """The grouped layout of `raw`; `planes(chunk, itemsize)` splits the other regions into byte planes."""
    grouped, rest = _plan(regions)
    offsets = _offsets(regions)
    codes, orders = [], []
    for i in grouped:
        region = regions[i]
        matrix = np.frombuffer(raw, np.int8, region.nbytes, offsets[i]).reshape(region.rows, -1)
        if _sorted(region):
            order = similarity_order(matrix)
            orders.append(order.tobytes())
            matrix = matrix[order]
        codes.append(np.ascontiguousarray(matrix.T).tobytes())
    others = [planes(raw[offsets[i] : offsets[i] + regions[i].nbytes], regions[i].itemsize) for i in rest]
    return b"".join(codes + orders + others)


def ungroup_payload(coded: bytes, regions: Sequence[Region], unplanes: Callable[[bytes, int], bytes]) -> bytes:
    """Inverse of `group_payload`."""
    if len(coded) != grouped_size(regions):
        raise ArtifactError(f"grouped payload is {len(coded)} bytes but the tensor table needs "
                            f"{grouped_size(regions)}: "
                            "the file is damaged; re-create it with `pgolf pack`")
    grouped, rest = _plan(regions)
    parts: dict[int, bytes] = {}
    cursor = 0
    transposed = {}
    for i in grouped:
        transposed[i] = np.frombuffer(coded, np.int8, regions[i].nbytes, cursor)
        cursor += regions[i].nbytes
    for i in grouped:
        region = regions[i]
        matrix = transposed[i].reshape(-1, region.rows).T
        if _sorted(region):
            order = np.frombuffer(coded, _ORDER_DTYPE, region.rows, cursor).astype(np.int64)
            cursor += region.rows * _ORDER_DTYPE().itemsize
            if not np.array_equal(np.sort(order), np.arange(region.rows)):
                raise ArtifactError("grouped payload: a stored row order is not a permutation; the file is damaged — "
                                    "re-create it with `pgolf pack`")
            restored = np.empty_like(matrix)
            restored[order] = matrix
            matrix = restored
        parts[i] = np.ascontiguousarray(matrix).tobytes()
    for i in rest:
        parts[i] = unplanes(coded[cursor : cursor + regions[i].nbytes], regions[i].itemsize)
        cursor += regions[i].nbytes
    return b"".join(parts[i] for i in range(len(regions)))
