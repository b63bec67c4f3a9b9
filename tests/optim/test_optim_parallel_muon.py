"""Parallel Muon in one process: banks by shape, batched Newton–Schulz, same update as Muon."""

from __future__ import annotations

from typing import Any

import torch

from pgolf.optim.parallel_muon import Bank, ParallelMuon, make_banks
from pgolf.optim.round_robin import Muon
from testkit import present

SHAPES = [(16, 8), (8, 16), (16, 8), (8, 8), (16, 8), (8, 16)]
OPTIONS: dict[str, Any] = dict(lr=0.05, momentum=0.9, backend_steps=5, ns_dtype=torch.float32,
                               ns_variant="polar_express", row_normalize=True, weight_decay=0.2)


def _params(seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s)) for s in SHAPES]


def _grads(step: int) -> list[torch.Tensor]:
    torch.manual_seed(100 + step)
    return [torch.randn(*s) for s in SHAPES]


def _stacked(bank: Bank) -> torch.Tensor:
    assert bank.buffers is not None
    return bank.buffers["stacked"]


def _run(opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: range) -> None:
    for step in steps:
        for p, g in zip(params, _grads(step), strict=True):
            p.grad = g
        if isinstance(opt, ParallelMuon):
            opt.sync_gradients()
        opt.step()


def test_banks_group_equal_shapes_largest_first() -> None:
    banks = make_banks(_params(0), world_size=2)
    assert [(b.rows, b.cols, len(b.params)) for b in banks] == [(16, 8, 3), (8, 16, 2), (8, 8, 1)]
    assert [(b.padded, b.shard) for b in banks] == [(4, 2), (2, 1), (2, 1)]


def test_parallel_muon_equals_muon() -> None:
    plain, banked = _params(0), _params(0)
    _run(Muon(plain, **OPTIONS), plain, range(4))
    _run(ParallelMuon(banked, **OPTIONS), banked, range(4))
    for a, b in zip(plain, banked, strict=True):
        torch.testing.assert_close(b.detach(), a.detach(), atol=1e-6, rtol=1e-5)


def test_momentum_survives_a_state_dict_roundtrip() -> None:
    straight, resumed = _params(0), _params(0)
    _run(ParallelMuon(straight, **OPTIONS), straight, range(4))
    first = ParallelMuon(resumed, **OPTIONS)
    _run(first, resumed, range(2))
    second = ParallelMuon(resumed, **OPTIONS)
    second.load_state_dict(first.state_dict())
    _run(second, resumed, range(2, 4))
    for a, b in zip(straight, resumed, strict=True):
        assert torch.equal(a, b)


def test_clipping_matches_torch_on_the_global_norm() -> None:
    params = _params(0)
    extra = torch.nn.Parameter(torch.randn(5))
    opt = ParallelMuon(params, replicated=[extra], **OPTIONS)
    for p, g in zip(params, _grads(0), strict=True):
        p.grad = g.clone()
    extra.grad = torch.full((5,), 3.0)
    reference = [present(p.grad).clone() for p in [*params, extra]]
    twins = [torch.nn.Parameter(torch.zeros_like(g)) for g in reference]
    for twin, g in zip(twins, reference, strict=True):
        twin.grad = g.clone()
    expected_norm = torch.nn.utils.clip_grad_norm_(twins, 0.5)
    opt.sync_gradients()
    norm = opt.clip_grad_norm_(0.5)
    torch.testing.assert_close(norm, expected_norm)
    assert float(expected_norm) > 0.5  # the clip binds
    torch.testing.assert_close(extra.grad, twins[-1].grad)
    by_shape = {tuple(b.params[0].shape): b.grad_shard for b in opt.banks}
    torch.testing.assert_close(by_shape[(16, 8)], torch.stack([present(twins[i].grad) for i in (0, 2, 4)]))


def test_bank_buffers_are_allocated_once() -> None:
    params = _params(0)
    opt = ParallelMuon(params, **OPTIONS)
    _run(opt, params, range(1))
    pointers = {id(b): _stacked(b).data_ptr() for b in opt.banks}
    _run(opt, params, range(1, 3))
    assert {id(b): _stacked(b).data_ptr() for b in opt.banks} == pointers


def test_bf16_communication_rounds_gradients_but_keeps_fp32_momentum() -> None:
    exact, rounded = _params(0), _params(0)
    _run(ParallelMuon(exact, **OPTIONS), exact, range(3))
    opt = ParallelMuon(rounded, comm_dtype=torch.bfloat16, **OPTIONS)
    _run(opt, rounded, range(3))
    assert all(_stacked(b).dtype == torch.bfloat16 for b in opt.banks)
    assert all(opt.state[b.params[0]]["bank_momentum"].dtype == torch.float32 for b in opt.banks)
    for a, b in zip(exact, rounded, strict=True):
        assert not torch.equal(a, b)
        torch.testing.assert_close(b.detach(), a.detach(), atol=2e-3, rtol=0)
