"""Shared steps of the lane records' parity tests (#1289, #1425, #1204, #1855): seeded record weights moved off
their init, token batches, and the count/names/logits/loss/gradient/optimizer-step comparisons."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch
from recordkit import assert_close, assert_states_close, cheap_init, fp32, max_rel_diff, pgolf_step, record_step
from torch import Tensor, nn

from pgolf.interop import from_pgolf, to_pgolf
from pgolf.model.gpt import GPT

RecordModel = Callable[[], nn.Module]


def pair(build: RecordModel, preset: str, cfg, seed: int,
         noise: float = 0.02) -> tuple[nn.Module, GPT, dict[str, Tensor]]:
    """(record model, pgolf model, the record's state) holding the same weights: the record's seeded init with
    every tensor moved off it, so zero-init projections and identity gates take part (a part at its identity
    init would agree with anything). Built once per test module: a full-shape model costs seconds on 2 cores."""
    torch.manual_seed(seed)
    with cheap_init():  # the QRs of the record's init cost a minute here; the weights are perturbed anyway
        record = build()
    with torch.no_grad():
        for p in record.parameters():
            p.add_(torch.randn_like(p) * noise)
    state = {k: v.clone() for k, v in record.state_dict().items()}
    ours = fp32(GPT(dataclasses.replace(cfg.model, ortho_init=False)))  # the init is overwritten: skip its QRs
    ours.load_state_dict(to_pgolf(state, preset, cfg.model), strict=True)
    return record, ours, state


def tokens(vocab: int, batch: int, seq_len: int, seed: int = 0, low: int = 2) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of random tokens ≥ `low` (low = 2: no BOS, for records whose features cross documents)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.randint(low, vocab, (batch, seq_len + 1), generator=gen)
    return t[:, :-1].contiguous(), t[:, 1:].contiguous()


def assert_count_and_names(record: nn.Module, ours: GPT, state: dict[str, Tensor], preset: str, cfg,
                           record_params: int, unused: int = 0) -> None:
    """Counts (the record's less `unused`: elements it allocates that no forward reads and pgolf drops), the same
    record names after a round trip, and every weight pgolf holds back exactly where it was."""
    assert sum(p.numel() for p in record.parameters()) == record_params
    assert sum(p.numel() for p in ours.parameters()) == record_params - unused
    back = from_pgolf(ours.state_dict(), preset, cfg.model)
    assert sorted(back) == sorted(state)
    if unused:
        assert_states_close(to_pgolf(back, preset, cfg.model), to_pgolf(state, preset, cfg.model), "round trip", 0.0)
    else:
        assert_states_close(back, state, "round trip", tol=0.0)


def assert_loss_and_gradients(record: nn.Module, ours: GPT, x: Tensor, y: Tensor, preset: str, cfg,
                              **record_kwargs: object) -> None:
    """Loss and every gradient after one backward, on float64 copies of both models: the gradient of a scalar
    such as `lane_merge` sums tens of thousands of cancelling terms, so in fp32 the order of the summation
    alone moves it by 1e-4 relative; in float64 any real difference still shows, rounding does not.
    `record_kwargs` go to the record's forward (#1855's document boundaries, `cu_seqlens`)."""
    record, ours = copy.deepcopy(record).double(), copy.deepcopy(ours).double()
    loss_r, loss_o = record(x, y, **record_kwargs), ours(x, y)
    assert_close(loss_o, loss_r, "loss")
    loss_r.backward()
    loss_o.backward()
    grads_r = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in record.named_parameters()}
    grads_o = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in ours.named_parameters()}
    assert_states_close(to_pgolf(grads_r, preset, cfg.model), grads_o, "gradients")


RecordOptimizers = Callable[[nn.Module], tuple[torch.optim.Optimizer, list[torch.optim.Optimizer]]]


def assert_one_step(models: tuple[nn.Module, GPT, dict[str, Tensor]], optimizers: RecordOptimizers, h,
                    batch: tuple[Tensor, Tensor], preset: str, cfg) -> None:
    """Weights after one optimizer step at step 0 equal (≤ 1e-5) from the same, the record's clipped, gradients:
    the record's own Muon and AdamWs (`optimizers` builds them on a copy of the record) against pgolf's optimizers
    under `cfg` with its clipping off (see `recordkit.pgolf_step`)."""
    record, ours = copy.deepcopy(models[0]), copy.deepcopy(models[1])
    muon, adams = optimizers(record)
    grads = record_step(record, h, muon, adams, batch, preset, cfg)
    no_clip = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, grad_clip_norm=0.0))
    pgolf_step(ours, no_clip, grads)
    assert_states_close(ours.state_dict(), to_pgolf(record.state_dict(), preset, cfg.model), "weights after one step")


def assert_late_qat_loss(rec, record: nn.Module, ours: GPT, cfg, x: Tensor, y: Tensor, names: list[str],
                         monkeypatch) -> None:
    """Late QAT as the record runs it (`CastedLinear._qat_enabled` on) gives the loss of pgolf's QAT forward under
    the preset's `train.late_qat_scope = "projections"` and `train.qat_grid`, which reaches exactly `names`."""
    from pgolf.optim.factory import projection_qat_bits
    from pgolf.quant.qat import QATForward, bits_from_mapping

    with torch.no_grad():
        plain = record(x, y)
        monkeypatch.setattr(rec.CastedLinear, "_qat_enabled", True)
        theirs = record(x, y)
        bits = projection_qat_bits(ours, cfg.train.qat_bits)
        assert sorted(bits) == names and cfg.train.late_qat_scope == "projections"
        assert_close(QATForward(ours, bits_from_mapping(bits), torch.ones(()), cfg.train.qat_grid)(x, y), theirs,
                     "loss under late QAT")
    moved = max_rel_diff(theirs, plain)
    assert moved > 5e-5, moved  # the fake quantization moved the loss, far past rounding
