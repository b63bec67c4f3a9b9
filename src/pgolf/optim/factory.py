"""The optimizers of a run, one per row of the param-group table (`optim.param_groups`).

`optim.muon_impl` picks the Muon flavour: `round_robin` (the baseline's, behind DDP) or `parallel`
(shape banks, batched Newton–Schulz, reduce-scatter / all-gather, no DDP). Parallel Muon, the repeated
AdamW of PR #1289's routes and late QAT's fake quantization are imported only where a config uses them, so a
run imports (and ships) only its own optimizers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pgolf.config import Config
from pgolf.config.parsing import uses_parallel_muon
from pgolf.model.gpt import GPT
from pgolf.optim.muon import Orthogonalizer, banked_newton_schulz, newton_schulz
from pgolf.optim.param_groups import ADAM, ParamGroup, group_of, param_table, replicated
from pgolf.precision import autocast_dtype
from pgolf.quant.plan import QuantPlan

if TYPE_CHECKING:  # each Muon flavour is imported only by the runs that use it
    from pgolf.optim.parallel_muon import ParallelMuon
    from pgolf.optim.round_robin import Muon
    from pgolf.quant.qat import BitsFor

    MuonLike = Muon | ParallelMuon


def _adam(spec: ParamGroup, cfg: Config, fused: bool) -> torch.optim.Optimizer:
    """Adam as the baseline (no decay), or AdamW-style decoupled decay scaled by the scheduled LR."""
    o, wd = cfg.optim, spec.weight_decay
    groups = [{"params": list(spec.params), "lr": spec.lr, "base_lr": spec.lr, "base_weight_decay": wd}]
    if spec.updates > 1:
        from pgolf.optim.repeated_adam import RepeatedAdamW

        return RepeatedAdamW(groups, spec.lr, (o.beta1, o.beta2), o.adam_eps, wd, spec.updates)
    return torch.optim.Adam(groups, betas=(o.beta1, o.beta2), eps=o.adam_eps, fused=fused,
                            weight_decay=wd, decoupled_weight_decay=wd > 0)


def ns_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """`auto`: Newton–Schulz runs in the compute dtype (bf16 as the baseline; fp32 for fp32 runs)."""
    choice = cfg.optim.muon_ns_dtype
    if choice == "auto":
        return autocast_dtype(cfg, device) or torch.float32
    return torch.bfloat16 if choice == "bf16" else torch.float32


def partition(model: GPT) -> tuple[dict[str, nn.Parameter], list[nn.Parameter]]:
    """({name: 2-D matrix}, control/scalar parameters), from the model's own partition (late QAT's view)."""
    groups = model.optimizer_groups()  # the model knows which of its technique parameters are matrices
    matrix_ids = {id(p) for p in groups.matrix}
    matrix = {name: p for name, p in model.named_parameters() if id(p) in matrix_ids}
    return matrix, groups.scalar


def qat_bits_for(model: GPT, bits: int) -> BitsFor:
    """Every Muon matrix fake-quantized at `bits`."""
    from pgolf.quant.qat import bits_from_mapping

    return bits_from_mapping(dict.fromkeys(partition(model)[0], bits))


def late_qat_bits(model: GPT, plan: QuantPlan) -> dict[str, int]:
    """{Muon matrix name: int width} that late QAT rehearses: the widths the plan stores them at."""
    return plan.matrix_bits(partition(model)[0])


RECORD_QAT_PROJECTIONS = ("bigram.proj.weight", "value_embed.proj.weight")  # PR #1289's `CastedLinear` weights


def projection_qat_bits(model: GPT, bits: int) -> dict[str, int]:
    """`train.late_qat_scope = "projections"`: PR #1289's late QAT reaches only its `CastedLinear` modules, with
    tied embeddings the bigram and value-embedding projections (the banks and recurrence MLPs are plain
    parameters), all at `bits`."""
    names = {name for name, _ in model.named_parameters()}
    return {name: bits for name in RECORD_QAT_PROJECTIONS if name in names}


def _muon(spec: ParamGroup, table: tuple[ParamGroup, ...], cfg: Config, device: torch.device,
          orthogonalize: Orthogonalizer) -> MuonLike:
    o = cfg.optim
    options: dict[str, Any] = dict(
        lr=spec.lr, momentum=o.muon_momentum, backend_steps=o.muon_backend_steps, nesterov=o.muon_nesterov,
        ns_dtype=ns_dtype(cfg, device), ns_variant=o.muon_ns_variant, row_normalize=o.muon_row_normalize,
        weight_decay=spec.weight_decay, orthogonalize=orthogonalize)
    matrices: list[Tensor] = list(spec.params)
    muon: MuonLike
    if uses_parallel_muon(cfg):
        from pgolf.optim.parallel_muon import ParallelMuon

        comm = torch.bfloat16 if o.muon_comm_dtype == "bf16" else None
        muon = ParallelMuon(matrices, replicated=replicated(table), comm_dtype=comm, momentum_dtype=momentum_dtype(cfg),
                            **options)
    else:
        from pgolf.optim.round_robin import Muon

        muon = Muon(matrices, **options)
    for param_group in muon.param_groups:
        param_group["base_lr"] = spec.lr
        param_group["base_weight_decay"] = spec.weight_decay
    return muon


def orthogonalizer_for(cfg: Config) -> Orthogonalizer:
    """Newton–Schulz in the operation order of the records that use this Muon flavour."""
    return banked_newton_schulz if uses_parallel_muon(cfg) else newton_schulz


def momentum_dtype(cfg: Config) -> torch.dtype:
    return torch.bfloat16 if cfg.optim.muon_momentum_dtype == "bf16" else torch.float32


def build_optimizers(model: GPT, cfg: Config, device: torch.device,
                     orthogonalize: Orthogonalizer | None = None) -> tuple[list[torch.optim.Optimizer], MuonLike]:
    """All optimizers, one per row of the param-group table (token, [head], muon, scalar), and the Muon one."""
    table = param_table(model, cfg)
    orthogonalize = orthogonalize or orthogonalizer_for(cfg)
    fused = device.type == "cuda"
    muon = _muon(group_of(table, "matrix"), table, cfg, device, orthogonalize)
    optimizers: list[torch.optim.Optimizer] = [_adam(spec, cfg, fused) if spec.optimizer == ADAM else muon
                                               for spec in table]
    return optimizers, muon


def set_learning_rates(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * multiplier


def set_muon_weight_decay(muon: MuonLike, multiplier: float) -> None:
    """The WD taper scales Muon's decoupled decay (Adam decay is not tapered, as in the records)."""
    for group in muon.param_groups:
        group["weight_decay"] = group["base_weight_decay"] * multiplier
