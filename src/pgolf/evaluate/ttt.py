"""What score-first test-time training shares across its forms (TECHNIQUES §4.25): the trainable copy
of the model, the cosine learning rate over chunks, and SGD over released tokens (`sgd_on_tokens`):
`epochs` passes of `seq_len`-long sequences, gradients averaged over ranks and clipped, optionally
fake-quantized parameters (`eval.ttt_qat_params`).

Full-model chunked TTT (`pgolf.evaluate.ttt_full`) and the global SGD phases of phased LoRA TTT
(`pgolf.evaluate.ttt_lora`) train with it. The adaptation is transient: it runs on a copy of the model;
the artifact is never changed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from pgolf.errors import UserError
from pgolf.evaluate.context import ScoringContext
from pgolf.evaluate.windows import batched, rank_slice
from pgolf.model.gpt import GPT
from pgolf.train.distributed import sum_across_group


@dataclass(frozen=True)
class SGDSettings:
    """One SGD pass over released tokens: `batch_seqs` sequences of `seq_len` per rank and step."""

    seq_len: int
    batch_seqs: int
    epochs: int
    momentum: float
    grad_clip: float  # 0 = no clipping
    qat_params: tuple[str, ...] = ()  # parameters fake-quantized in the training forward (eval.ttt_qat_params)
    qat_bits: int = 6


def cosine_lr(base_lr: float, index: int, count: int) -> float:
    """lr_i = lr0 · ½(1 + cos(π·i/(count − 1))): lr0 at the first chunk, 0 at the last."""
    if count <= 1:
        return base_lr
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * index / (count - 1)))


def trainable_copy(model: GPT, freeze_blocks: int = 0) -> tuple[GPT, list[nn.Parameter]]:
    """A copy of the model to adapt, with the first `freeze_blocks` blocks frozen."""
    adapted = copy.deepcopy(model)
    frozen = tuple(f"blocks.{i}." for i in range(freeze_blocks))
    params = []
    for name, param in adapted.named_parameters():
        param.requires_grad_(not name.startswith(frozen))
        if param.requires_grad:
            params.append(param)
    return adapted, params


def _average_gradients(params: list[nn.Parameter]) -> None:
    """Sum the per-rank gradients (each rank's loss is already divided by the global token count)."""
    for param in params:
        if param.grad is None:
            param.grad = torch.zeros_like(param)
    sum_across_group(*(param.grad for param in params if param.grad is not None))


def _training_loss(model: GPT, settings: SGDSettings) -> Callable[[Tensor, Tensor], Tensor]:
    """The loss the SGD pass trains on: the model's, or (with `settings.qat_params`) the model's with those
    parameters seen at their int-k grid values with the 1/qmax step floor."""
    if not settings.qat_params:
        return model
    from pgolf.quant.qat import fake_quant_ste  # only runs with eval.ttt_qat_params import (and ship) QAT

    params = dict(model.named_parameters())
    unknown = [name for name in settings.qat_params if name not in params]
    if unknown:
        raise UserError(f"eval.ttt_qat_params names {', '.join(unknown)}, not parameters of this model")

    def quantized_loss(x: Tensor, y: Tensor) -> Tensor:
        one = torch.ones((), device=x.device)
        swapped = {name: fake_quant_ste(params[name], settings.qat_bits, one, "floored")
                   for name in settings.qat_params}
        return functional_call(model, swapped, (x, y))

    return quantized_loss


def sgd_on_tokens(model: GPT, optimizer: torch.optim.Optimizer, params: list[nn.Parameter], segment: Tensor,
                  lr: float, settings: SGDSettings, scoring: ScoringContext) -> None:
    """Train on the full `seq_len` sequences of `segment` (pairs of a released range; the tail is dropped).

    Every rank takes the same number of steps; step k's global batch is `batch_seqs × world_size`
    consecutive sequences, split over ranks, and its loss is the mean over all of them.
    """
    ctx = scoring.dist_ctx
    seq_len = settings.seq_len
    n_seqs = (segment.numel() - 1) // seq_len
    if n_seqs == 0:
        return
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss_of = _training_loss(model, settings)
    global_batch = settings.batch_seqs * ctx.world_size
    for _ in range(settings.epochs):
        for step_seqs in batched(range(n_seqs), global_batch):
            mine = rank_slice(step_seqs, ctx.rank, ctx.world_size)
            optimizer.zero_grad(set_to_none=True)
            if len(mine):
                rows = torch.tensor(list(mine)) * seq_len
                index = rows[:, None] + torch.arange(seq_len)[None, :]
                x = segment[index].to(scoring.device)
                y = segment[index + 1].to(scoring.device)
                with scoring.autocast():
                    # this rank's mean × its share of the step's sequences: the step's loss is the global mean
                    loss = loss_of(x, y) * (len(mine) / len(step_seqs))
                loss.backward()
            _average_gradients(params)
            if settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
