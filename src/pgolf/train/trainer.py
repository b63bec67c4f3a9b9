"""The training loop: step, accumulate, log, checkpoint, stop on the wallclock cap.

Everything it needs (model, optimizers, loader, evaluation function) is built by the caller;
the loop knows nothing about quantization or artifacts.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from pgolf.config import Config
from pgolf.data.loader import DistributedTokenLoader
from pgolf.errors import NonFiniteLossError
from pgolf.evaluate.bpb import BPBResult
from pgolf.optim.factory import set_learning_rates
from pgolf.optim.muon import Muon
from pgolf.optim.schedule import Schedule
from pgolf.train.checkpoint import capture_rng, restore_rng, save_checkpoint
from pgolf.train.distributed import DistContext, any_rank
from pgolf.train.metrics import Progress, RunLogger
from pgolf.train.phases import PhaseClock


@dataclass
class TrainState:
    step: int = 0
    training_time_ms: float = 0.0
    stopped_early: bool = False
    train_tokens: int = 0
    last_train_loss: float = float("nan")


@dataclass
class TrainerParts:
    cfg: Config
    ctx: DistContext
    model: nn.Module  # the unwrapped model (its state dict is what gets saved)
    forward: Callable[[Tensor, Tensor], Tensor]  # compiled/DDP-wrapped loss function
    ddp: DistributedDataParallel | None
    optimizers: list[torch.optim.Optimizer]
    muon: Muon
    make_loader: Callable[[], DistributedTokenLoader]
    grad_accum_steps: int
    autocast_dtype: torch.dtype | None
    evaluate: Callable[[], BPBResult]
    logger: RunLogger
    clock: PhaseClock
    checkpoint_path: Path | None


class Trainer:
    def __init__(self, parts: TrainerParts) -> None:
        self.p = parts
        self.schedule = Schedule.from_config(parts.cfg)
        self.loader = parts.make_loader()
        self.state = TrainState()

    # ---- one optimizer step -------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.p.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.p.ctx.device.type, dtype=self.p.autocast_dtype)

    def _micro_step(self, micro: int) -> Tensor:
        cfg = self.p.cfg
        x, y = self.loader.next_batch(cfg.train.train_batch_tokens, cfg.train.train_seq_len, self.p.grad_accum_steps)
        last = micro == self.p.grad_accum_steps - 1
        sync = contextlib.nullcontext() if self.p.ddp is None or last else self.p.ddp.no_sync()
        with sync:
            with self._autocast():
                loss = self.p.forward(x, y)
            (loss / self.p.grad_accum_steps).backward()
        return loss.detach()

    def _step(self, step: int, lr_scale: float) -> Tensor:
        for opt in self.p.optimizers:
            opt.zero_grad(set_to_none=True)
        train_loss = torch.zeros((), device=self.p.ctx.device)
        for micro in range(self.p.grad_accum_steps):
            train_loss += self._micro_step(micro)
        train_loss /= self.p.grad_accum_steps
        if self.p.ctx.distributed:
            dist.all_reduce(train_loss, op=dist.ReduceOp.AVG)
        if not math.isfinite(float(train_loss)):
            raise NonFiniteLossError(self._non_finite_message(step, float(train_loss)))
        for group in self.p.muon.param_groups:
            group["momentum"] = self.schedule.muon_momentum(step)
        set_learning_rates(self.p.optimizers, lr_scale)
        if self.p.cfg.optim.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.p.model.parameters(), self.p.cfg.optim.grad_clip_norm)
        for opt in self.p.optimizers:
            opt.step()
        for opt in self.p.optimizers:
            opt.zero_grad(set_to_none=True)
        return train_loss

    def _non_finite_message(self, step: int, loss: float) -> str:
        """Name the first non-finite parameter, else the first non-finite gradient (the likely source)."""
        named = list(self.p.model.named_parameters())
        bad_params = (f"parameter {n}" for n, p in named if not torch.isfinite(p).all())
        bad_grads = (f"gradient of {n}" for n, p in named if p.grad is not None and not torch.isfinite(p.grad).all())
        culprit = next(bad_params, None) or next(bad_grads, "none of the parameters or gradients (activations overflowed)")
        return (f"training loss became {loss} at step {step + 1}; first non-finite tensor: {culprit}. "
                "Lower the learning rates (optim.*_lr), enable optim.grad_clip_norm, or use train.dtype=fp32")

    # ---- priming, checkpoints -----------------------------------------------------------
    def prime(self) -> None:
        """Run `warmup_steps` real steps to trigger compilation, then roll everything back."""
        steps = self.p.cfg.train.warmup_steps
        if steps <= 0:
            return
        model_state = {k: v.detach().clone() for k, v in self.p.model.state_dict().items()}
        opt_states = [copy.deepcopy(opt.state_dict()) for opt in self.p.optimizers]
        for i in range(steps):
            self._step(0, 1.0)
            self.p.logger.log(f"warmup_step:{i + 1}/{steps}")
        self.p.model.load_state_dict(model_state, strict=True)
        for opt, state in zip(self.p.optimizers, opt_states, strict=True):
            opt.load_state_dict(state)
        self.loader = self.p.make_loader()

    def checkpoint_payload(self) -> dict[str, Any]:
        s = self.state
        return {
            "step": s.step, "training_time_ms": s.training_time_ms, "train_tokens": s.train_tokens,
            "model": {k: v.detach().cpu() for k, v in self.p.model.state_dict().items()},
            "optimizers": [opt.state_dict() for opt in self.p.optimizers],
            "loader": self.loader.state_dict(),
            "rng": capture_rng(),
        }

    def restore(self, payload: dict[str, Any]) -> None:
        self.p.model.load_state_dict(payload["model"], strict=True)
        for opt, state in zip(self.p.optimizers, payload["optimizers"], strict=True):
            opt.load_state_dict(state)
        self.loader.load_state_dict(payload["loader"])
        restore_rng(payload["rng"])
        self.state = TrainState(step=payload["step"], training_time_ms=payload["training_time_ms"],
                                train_tokens=payload["train_tokens"])

    def _save_checkpoint(self) -> None:
        if self.p.checkpoint_path is None:
            return
        with self.p.clock.phase("checkpoint"):
            payload = self.checkpoint_payload()
            if self.p.ctx.is_main:
                save_checkpoint(self.p.checkpoint_path, payload)

    # ---- the loop -----------------------------------------------------------------------
    def _validate(self, step: int) -> None:
        with self.p.clock.phase("periodic_val"):
            self.p.model.eval()
            result = self.p.evaluate()
            self.p.model.train()
        t = self.p.cfg.train
        self.p.logger.log(f"step:{step}/{t.iterations} val_loss:{result.val_loss:.4f} val_bpb:{result.val_bpb:.4f} "
                          f"train_time:{self.state.training_time_ms:.0f}ms "
                          f"step_avg:{self.state.training_time_ms / max(step, 1):.2f}ms")
        self.p.logger.metrics({"step": step, "val_loss": result.val_loss, "val_bpb": result.val_bpb,
                               "train_time_ms": self.state.training_time_ms})

    def fit(self) -> TrainState:
        cfg, s = self.p.cfg, self.state
        t = cfg.train
        tokens_per_step = t.train_batch_tokens
        cap_ms = 1000.0 * t.max_wallclock_seconds if t.max_wallclock_seconds > 0 else None
        sync = self.p.clock.sync
        progress = Progress(t.iterations, self.p.ctx.is_main, initial=s.step)
        self.p.model.train()
        try:
            while s.step < t.iterations and not s.stopped_early:
                if t.val_loss_every > 0 and s.step > 0 and s.step % t.val_loss_every == 0:
                    self._validate(s.step)
                sync()
                start = time.perf_counter()
                lr_scale = self.schedule.lr_multiplier(s.step, s.training_time_ms)
                loss = self._step(s.step, lr_scale)
                sync()
                s.training_time_ms += 1000.0 * (time.perf_counter() - start)
                s.step += 1
                s.train_tokens += tokens_per_step
                self._log_step(loss, lr_scale, progress)
                if t.checkpoint_every > 0 and s.step % t.checkpoint_every == 0 and s.step < t.iterations:
                    self._save_checkpoint()
                if any_rank(self.p.ctx, cap_ms is not None and s.training_time_ms >= cap_ms) and s.step < t.iterations:
                    s.stopped_early = True
                    self.p.logger.log(f"stopping_early: wallclock_cap train_time:{s.training_time_ms:.0f}ms "
                                      f"step:{s.step}/{t.iterations}")
        finally:
            progress.close()
        self.p.clock.add("train", s.training_time_ms / 1000.0, "train")
        return s

    def _log_step(self, loss: Tensor, lr_scale: float, progress: Progress) -> None:
        s, t = self.state, self.p.cfg.train
        value = float(loss)
        s.last_train_loss = value
        record = {"step": s.step, "train_loss": value, "lr_scale": lr_scale,
                  "train_time_ms": round(s.training_time_ms, 3), "tokens": s.train_tokens}
        progress.update(s.step, loss=value)
        if t.train_log_every > 0 and (s.step <= 10 or s.step % t.train_log_every == 0 or s.step == t.iterations):
            self.p.logger.log(f"step:{s.step}/{t.iterations} train_loss:{value:.4f} "
                              f"train_time:{s.training_time_ms:.0f}ms step_avg:{s.training_time_ms / s.step:.2f}ms")
            self.p.logger.metrics(record)
