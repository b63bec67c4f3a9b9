"""GradSync: each way of synchronising gradients clips by the same global norm."""

from __future__ import annotations

import torch
from torch import nn

from pgolf.optim.parallel_muon import ParallelMuon
from pgolf.train.bank_sync import BankSync
from pgolf.train.grad_sync import LocalSync


def _params(seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    matrices: list[torch.Tensor] = [nn.Parameter(torch.zeros(shape)) for shape in ((4, 3), (4, 3), (2, 2))]
    replicated: list[torch.Tensor] = [nn.Parameter(torch.zeros(5))]
    for p in matrices + replicated:
        p.grad = torch.randn(p.shape, generator=generator) * 3
    return matrices, replicated


def test_local_sync_clips_to_the_global_norm() -> None:
    matrices, replicated = _params()
    sync = LocalSync(matrices + replicated)
    with sync.micro_step(last=False):
        pass
    sync.after_backward()
    sync.clip(1.0)
    grads = [p.grad for p in matrices + replicated]
    assert all(g is not None for g in grads)
    total = torch.stack([g.square().sum() for g in grads if g is not None]).sum().sqrt()
    assert abs(float(total) - 1.0) < 1e-4


def test_bank_sync_clips_exactly_as_local_sync_on_one_process() -> None:
    local_matrices, local_replicated = _params()
    LocalSync(local_matrices + local_replicated).clip(2.0)
    matrices, replicated = _params()
    muon = ParallelMuon(matrices, lr=0.01, momentum=0.9, backend_steps=5, replicated=replicated)
    sync = BankSync(muon)
    sync.after_backward()
    sync.clip(2.0)
    torch.testing.assert_close(replicated[0].grad, local_replicated[0].grad)
    by_shape = {}
    for p in local_matrices:
        by_shape.setdefault(tuple(p.shape), []).append(p.grad)
    for bank in muon.banks:
        expected = torch.stack(by_shape[(bank.rows, bank.cols)])
        assert bank.grad_shard is not None
        torch.testing.assert_close(bank.grad_shard[: len(expected)], expected)
