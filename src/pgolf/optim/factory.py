"""The baseline's parameter partition: Adam for embeddings, head and control tensors, Muon for matrices.

`optim.muon_impl` picks the Muon flavour: `round_robin` (the baseline's, behind DDP) or `parallel`
(shape banks, batched Newton–Schulz, reduce-scatter / all-gather, no DDP).
"""

from __future__ import annotations

import torch

from pgolf.config import Config
from pgolf.errors import ConfigError
from pgolf.model.gpt import GPT
from pgolf.optim.muon import Muon, Orthogonalizer, newton_schulz
from pgolf.optim.parallel_muon import ParallelMuon
from pgolf.precision import autocast_dtype
from pgolf.quant.policy import assign_formats, load_policy
from pgolf.quant.qat import BitsFor, bits_from_mapping

MuonLike = Muon | ParallelMuon


def _adam(params: list[torch.Tensor], lr: float, weight_decay: float, cfg: Config, fused: bool) -> torch.optim.Adam:
    """Adam as the baseline (no decay), or AdamW-style decoupled decay scaled by the scheduled LR."""
    group = {"params": params, "lr": lr, "base_lr": lr, "base_weight_decay": weight_decay}
    o = cfg.optim
    return torch.optim.Adam([group], betas=(o.beta1, o.beta2), eps=o.adam_eps, fused=fused,
                            weight_decay=weight_decay, decoupled_weight_decay=weight_decay > 0)


def ns_dtype(cfg: Config, device: torch.device) -> torch.dtype:
    """`auto`: Newton–Schulz runs in the compute dtype (bf16 as the baseline; fp32 for fp32 runs)."""
    choice = cfg.optim.muon_ns_dtype
    if choice == "auto":
        return autocast_dtype(cfg, device) or torch.float32
    return torch.bfloat16 if choice == "bf16" else torch.float32


def adam_matrices(cfg: Config) -> frozenset[str]:
    """Matrices a record trains with its scalar Adam instead of Muon."""
    chosen = {"bigram.proj.weight": cfg.optim.bigram_proj_adam, "value_embed.proj.weight": cfg.optim.ve_proj_adam}
    return frozenset(name for name, to_adam in chosen.items() if to_adam)


def partition(model: GPT, to_adam: frozenset[str] = frozenset()) -> tuple[dict[str, nn.Parameter], list[nn.Parameter]]:
    """({name: Muon matrix}, Adam-trained control/scalar parameters), from the model's own partition;
    the matrices named in `to_adam` join the Adam-trained ones."""
    groups = model.optimizer_groups()  # the model knows which of its technique parameters are matrices
    matrix_ids = {id(p) for p in groups.matrix}
    matrix = {name: p for name, p in model.named_parameters() if id(p) in matrix_ids}
    moved = [matrix.pop(name) for name in sorted(to_adam) if name in matrix]
    return matrix, groups.scalar + moved


def qat_bits_for(model: GPT, bits: int) -> BitsFor:
    """Every Muon matrix fake-quantized at `bits`."""
    return bits_from_mapping({name: bits for name in partition(model)[0]})


def late_qat_bits(model: GPT, cfg: Config) -> dict[str, int]:
    """{Muon matrix name: int width} that late QAT rehearses: the run's own quantization.

    With `quant.scheme = "policy"` each matrix gets the int-k its policy rule stores it at (a matrix the policy
    keeps in float is not fake-quantized); the int8 and fit schemes have no fixed per-tensor width, so every
    matrix takes `train.qat_bits`.
    """
    matrices = partition(model)[0]
    if cfg.quant.scheme != "policy":
        return {name: cfg.train.qat_bits for name in matrices}
    formats = assign_formats(load_policy(cfg.quant.policy), model.state_dict()).formats
    bits = {name: b for name in matrices if (b := formats[name].bits) is not None}
    if not bits:
        raise ConfigError(f"train.late_qat_threshold: quant policy {cfg.quant.policy!r} stores no Muon matrix as "
                          "int-k, so late QAT has nothing to rehearse; set it to 0 or pick an int policy")
    return bits


def build_optimizers(model: GPT, cfg: Config, device: torch.device,
                     orthogonalize: Orthogonalizer = newton_schulz) -> tuple[list[torch.optim.Optimizer], MuonLike]:
    """Return all optimizers (token, [head], muon, scalar order as the baseline) and the Muon one."""
    named_matrix, scalar = partition(model, adam_matrices(cfg))
    matrix = list(named_matrix.values())
    fused = device.type == "cuda"
    o = cfg.optim
    token_lr = o.tied_embed_lr if cfg.model.tie_embeddings else o.embed_lr
    groups = model.optimizer_groups()
    optimizers: list[torch.optim.Optimizer] = [_adam(groups.token, token_lr, o.embed_weight_decay, cfg, fused)]
    if groups.head:
        optimizers.append(_adam(groups.head, o.head_lr, o.embed_weight_decay, cfg, fused))
    options = dict(lr=o.matrix_lr, momentum=o.muon_momentum, backend_steps=o.muon_backend_steps,
                   nesterov=o.muon_nesterov, ns_dtype=ns_dtype(cfg, device), ns_variant=o.muon_ns_variant,
                   row_normalize=o.muon_row_normalize, weight_decay=o.muon_weight_decay, orthogonalize=orthogonalize)
    if o.muon_impl == "parallel":
        matrix_ids = {id(p) for p in matrix}
        replicated = [p for p in model.parameters() if id(p) not in matrix_ids]
        muon: MuonLike = ParallelMuon(matrix, replicated=replicated, **options)
    else:
        muon = Muon(matrix, **options)
    for group in muon.param_groups:
        group["base_lr"] = o.matrix_lr
        group["base_weight_decay"] = o.muon_weight_decay
    optimizers += [muon, _adam(scalar, o.scalar_lr, o.adam_weight_decay, cfg, fused)]
    return optimizers, muon


def set_learning_rates(optimizers: list[torch.optim.Optimizer], multiplier: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * multiplier


def set_muon_weight_decay(muon: MuonLike, multiplier: float) -> None:
    """The WD taper scales Muon's decoupled decay (Adam decay is not tapered, as in the records)."""
    for group in muon.param_groups:
        group["weight_decay"] = group["base_weight_decay"] * multiplier
