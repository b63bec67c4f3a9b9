"""Token-mixing input features: SmearGate here, BigramHash / TrigramHash in `pgolf.model.bigram`
(TECHNIQUES.md §4.15; each is imported only by models that use it, so a run ships only its own).

Each one lets a position see its predecessor(s) before attention. All of them treat a BOS token as
the start of a document: it never receives anything from the tokens before it (the #1797 leak that
PR #1851/#1855 fixed for SmearGate), in training, evaluation and every other forward path, because
the model has only this one implementation. Passing `NO_BOS` as the BOS id turns the boundary off: the
form of PR #635, whose SmearGate and BigramHash mix across documents (`model.feature_bos_reset = false`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pgolf.model.layers import declares_controls

NO_BOS = -1  # a BOS id no token has: no document boundaries


def _previous(x: Tensor) -> Tensor:
    """x_{t−1} with zeros at t = 0."""
    return F.pad(x[:, :-1], (0, 0, 1, 0))


def _not_bos(ids: Tensor, bos_id: int, dtype: torch.dtype) -> Tensor:
    return (ids != bos_id).to(dtype)[..., None]


@declares_controls("smear_gate")
class SmearGateV1(nn.Module):
    """x_t ← (1−g)⊙x_t + g⊙x_{t−1}, g = σ(smear_gate) (zero-init: g = 0.5), on the normalised stream;
    BOS positions are left unchanged."""

    def __init__(self, dim: int, bos_id: int) -> None:
        super().__init__()
        self.bos_id = bos_id
        self.smear_gate = nn.Parameter(torch.zeros(dim, dtype=torch.float32))

    def forward(self, x: Tensor, ids: Tensor) -> Tensor:
        g = torch.sigmoid(self.smear_gate).to(x.dtype)
        return x + _not_bos(ids, self.bos_id, x.dtype) * g * (_previous(x) - x)


@declares_controls("smear_w", "smear_lambda")
class SmearGateV2(nn.Module):
    """e_t ← e_t + λ·σ(W·e_t[:window])·e_{t−1} on the raw embeddings, with the BOS mask; λ and W start at
    zero, so the gate starts as the identity."""

    def __init__(self, window: int, bos_id: int) -> None:
        super().__init__()
        self.window = window
        self.bos_id = bos_id
        self.smear_w = nn.Parameter(torch.zeros(1, window, dtype=torch.float32))
        self.smear_lambda = nn.Parameter(torch.zeros((), dtype=torch.float32))

    def forward(self, e: Tensor, ids: Tensor) -> Tensor:
        gate = self.smear_lambda.to(e.dtype) * torch.sigmoid(F.linear(e[..., : self.window], self.smear_w.to(e.dtype)))
        return e + _not_bos(ids, self.bos_id, e.dtype) * gate * _previous(e)
