"""BigramHash / TrigramHash: a hashed table of the (previous, current) token pair, projected and added
to the token embedding (TECHNIQUES.md §4.15). A BOS token has no predecessor in its document, as for every
input feature (`pgolf.model.embeddings`); its `NO_BOS` turns the boundary off (PR #635).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.model.layers import CastedLinear, declares_controls


def _shift(x: Tensor, steps: int) -> Tensor:
    """x delayed by `steps` positions along dim 1 (the first `steps` positions hold a copy of x; masked by callers)."""
    return torch.cat((x[:, :steps], x[:, :-steps]), dim=1)


def _first_positions(ids: Tensor, count: int) -> Tensor:
    return (torch.arange(ids.size(1), device=ids.device) < count)[None, :]


def bigram_buckets(ids: Tensor, buckets: int, bos_id: int) -> Tensor:
    """h_t = ((36313·cur) XOR (27191·prev)) mod (buckets−1); bucket buckets−1 where there is no
    predecessor in the document: position 0 and every BOS."""
    ids = ids.long()
    prev = _shift(ids, 1)
    hashed = torch.bitwise_xor(36313 * ids, 27191 * prev) % (buckets - 1)
    no_predecessor = _first_positions(ids, 1) | (ids == bos_id)
    return torch.where(no_predecessor, buckets - 1, hashed)


def trigram_buckets(ids: Tensor, buckets: int, bos_id: int) -> Tensor:
    """h_t = ((36313·t0) XOR (27191·t−1) XOR (51497·t−2)) mod (buckets−1); the reserved bucket where
    two predecessors are not both in the document (the first two positions, a BOS, the token after it)."""
    ids = ids.long()
    prev, prev2 = _shift(ids, 1), _shift(ids, 2)
    hashed = torch.bitwise_xor(torch.bitwise_xor(36313 * ids, 27191 * prev), 51497 * prev2) % (buckets - 1)
    incomplete = _first_positions(ids, 2) | (ids == bos_id) | (prev == bos_id)
    return torch.where(incomplete, buckets - 1, hashed)


@declares_controls("bigram_scale")
class BigramHash(nn.Module):
    """e_t ← e_t + s · P·E_b[h_t] (+ E_b[trigram h_t]), added to the token embedding before the first norm.

    The table is zero-initialised and the projection is not: with both at zero each one's gradient
    (proportional to the other) would stay zero forever. `bigram_scale` starts at 0.05.
    """

    def __init__(self, buckets: int, dim: int, model_dim: int, bos_id: int, trigram: bool) -> None:
        super().__init__()
        self.buckets = buckets
        self.bos_id = bos_id
        self.table = nn.Parameter(torch.zeros(buckets, dim, dtype=torch.float32))
        self.proj = CastedLinear(dim, model_dim)
        self.bigram_scale = nn.Parameter(torch.tensor(0.05, dtype=torch.float32))
        self._hashes = [bigram_buckets, trigram_buckets] if trigram else [bigram_buckets]

    def features(self, ids: Tensor) -> Tensor:
        """(batch, seq, dim): the summed table rows of every hash."""
        rows = [F.embedding(h(ids, self.buckets, self.bos_id), self.table) for h in self._hashes]
        return rows[0] if len(rows) == 1 else torch.stack(rows).sum(dim=0)

    def forward(self, e: Tensor, ids: Tensor) -> Tensor:
        return e + self.bigram_scale.to(e.dtype) * self.proj(self.features(ids).to(e.dtype))
