"""The training loop: step, accumulate, log, checkpoint, stop on the wallclock cap.

Everything it needs (model, optimizers, loader, evaluation function) is built by the caller;
the loop knows nothing about quantization or artifacts.

The host never waits for the device inside a training step: losses and the non-finite check stay on
the device (`DeviceLossWatch`) and the clock runs on host time between log steps, as the records do.
Only log, validation and checkpoint steps synchronise (read the loss, fold the exact elapsed time).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pgolf.config import Config
from pgolf.config.parsing import writes_checkpoints
from pgolf.data.loader import TrainLoader
from pgolf.errors import NonFiniteLossError
from pgolf.evaluate.bpb import BPBResult
from pgolf.optim.factory import set_learning_rates, set_muon_weight_decay
from pgolf.optim.schedule import Schedule, StepValues, SwitchTensors
from pgolf.rundir import TrainResult
from pgolf.train.distributed import DistContext, any_rank, average_across_ranks
from pgolf.train.grad_sync import GradSync
from pgolf.train.metrics import Progress, RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.runtime import RecompileCounter

if TYPE_CHECKING:  # weight averaging and Parallel Muon are imported only by the runs that use them
    from pgolf.optim.averaging import Averagers
    from pgolf.optim.factory import MuonLike


@dataclass
class TrainState:
    step: int = 0
    training_time_ms: float = 0.0
    stopped_early: bool = False
    train_tokens: int = 0
    last_train_loss: float = float("nan")
    recompiles: int = 0

    def result(self) -> TrainResult:
        return TrainResult(self.step, self.train_tokens, self.training_time_ms, self.stopped_early,
                           self.last_train_loss, self.recompiles)


class DeviceLossWatch:
    """Training losses kept on the device between log steps; `read()` is the only host sync.

    Records the last loss and the first step whose loss was not finite, with `torch.where` on device
    tensors, so a NaN is still reported at the step it appeared even if it is read a few steps later.
    """

    def __init__(self, device: torch.device) -> None:
        self.step = torch.zeros((), dtype=torch.int64, device=device)  # the step of the last observed loss
        self.last = torch.full((), float("nan"), device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.int64, device=device)
        self.first_bad_loss = torch.zeros((), device=device)

    def reset(self, step: int) -> None:
        """Forget everything; the next observed loss belongs to step `step + 1` (fill_ does not sync)."""
        self.step.fill_(step)
        self.first_bad_step.fill_(-1)

    def observe(self, loss: Tensor) -> None:
        self.step += 1
        new_bad = ~torch.isfinite(loss) & (self.first_bad_step < 0)
        self.first_bad_step = torch.where(new_bad, self.step, self.first_bad_step)
        self.first_bad_loss = torch.where(new_bad, loss.float(), self.first_bad_loss)
        self.last = loss.float()

    def read(self) -> tuple[float, int | None, float]:
        """(last loss, first non-finite step or None, its loss): one device→host transfer."""
        last, bad_step, bad_loss = torch.stack([self.last.double(), self.first_bad_step.double(),
                                                self.first_bad_loss.double()]).tolist()
        return last, (int(bad_step) if bad_step >= 0 else None), bad_loss


@dataclass
class TrainerParts:
    cfg: Config
    ctx: DistContext
    model: nn.Module  # the unwrapped model (its state dict is what gets saved)
    forward: Callable[[Tensor, Tensor], Tensor]  # compiled/DDP-wrapped loss function
    grad_sync: GradSync  # none, DDP or Parallel Muon's banks
    optimizers: list[torch.optim.Optimizer]
    muon: MuonLike
    make_loader: Callable[[], TrainLoader]
    grad_accum_steps: int
    autocast_dtype: torch.dtype | None
    evaluate: Callable[[], BPBResult]
    logger: RunLogger
    clock: PhaseClock
    checkpoint_path: Path | None
    switches: SwitchTensors | None = None  # schedule values read by compiled code
    averagers: Averagers | None = None
    recompiles: RecompileCounter | None = None


class Trainer:
    def __init__(self, parts: TrainerParts) -> None:
        self.p = parts
        self.schedule = Schedule.from_config(parts.cfg)
        self.loader = parts.make_loader()
        self.state = TrainState()
        self.switches = parts.switches or SwitchTensors(parts.ctx.device)
        self._recurrence_on = None  # unknown until the first step sets it
        self._warm = False
        self._last_values: StepValues | None = None
        self.watch = DeviceLossWatch(parts.ctx.device)
        self._timer_start: float | None = None  # host time the running training segment began

    # ---- one optimizer step -------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.p.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.p.ctx.device.type, dtype=self.p.autocast_dtype)

    def _micro_step(self, micro: int) -> Tensor:
        cfg = self.p.cfg
        x, y = self.loader.next_batch(cfg.train.train_batch_tokens, cfg.train.train_seq_len, self.p.grad_accum_steps)
        last = micro == self.p.grad_accum_steps - 1
        with self.p.grad_sync.micro_step(last):
            with self._autocast():
                loss = self.p.forward(x, y)
            (loss / self.p.grad_accum_steps).backward()
        return loss.detach()

    def _apply_switches(self, values: StepValues) -> None:
        """Schedule values into the tensors compiled code reads; recurrence through the model's own switch."""
        self.switches.write(values)
        if values.recurrence_active != self._recurrence_on:
            setter = getattr(self.p.model, "set_recurrence_active", None)
            if setter is not None:
                setter(values.recurrence_active)
            self._recurrence_on = values.recurrence_active

    def _step(self, step: int, values: StepValues, read: bool = False) -> float | None:
        """One optimizer step; with `read` (a log step) the loss is read before the update, so a
        non-finite loss stops the run while the culprit parameter is still the only non-finite one."""
        self._apply_switches(values)
        for opt in self.p.optimizers:
            opt.zero_grad(set_to_none=True)
        train_loss = torch.zeros((), device=self.p.ctx.device)
        for micro in range(self.p.grad_accum_steps):
            train_loss += self._micro_step(micro)
        train_loss /= self.p.grad_accum_steps
        self.p.grad_sync.after_backward()
        average_across_ranks(self.p.ctx, train_loss)
        self.watch.observe(train_loss)
        value = self._read_loss() if read else None
        for group in self.p.muon.param_groups:
            group["momentum"] = values.muon_momentum
        set_learning_rates(self.p.optimizers, values.lr_scale)
        set_muon_weight_decay(self.p.muon, values.muon_wd_scale)
        clip = self.p.cfg.optim.grad_clip_norm
        if clip > 0:
            self.p.grad_sync.clip(clip)
        # Muon last: Adam's kernels run while Parallel Muon's reduce-scatters are still in flight
        for opt in sorted(self.p.optimizers, key=lambda o: o is self.p.muon):
            opt.step()
        for opt in self.p.optimizers:
            opt.zero_grad(set_to_none=True)
        return value

    def _read_loss(self) -> float:
        """The host sync of a log step: the last loss; a non-finite loss since the last read stops the run."""
        last, bad_step, bad_loss = self.watch.read()
        if bad_step is not None:
            raise NonFiniteLossError(self._non_finite_message(bad_step - 1, bad_loss))
        return last

    def _non_finite_message(self, step: int, loss: float) -> str:
        """Name the first non-finite parameter, else the first non-finite gradient (the likely source)."""
        named = list(self.p.model.named_parameters())
        bad_params = (f"parameter {n}" for n, p in named if not torch.isfinite(p).all())
        bad_grads = (f"gradient of {n}" for n, p in named if p.grad is not None and not torch.isfinite(p.grad).all())
        culprit = (next(bad_params, None)
                   or next(bad_grads, "none of the parameters or gradients (activations overflowed)"))
        return (f"training loss became {loss} at step {step + 1}; first non-finite tensor: {culprit}. "
                "Lower the learning rates (optim.*_lr), enable optim.grad_clip_norm, or use train.dtype=fp32")

    # ---- priming, checkpoints -----------------------------------------------------------
    def prime(self) -> None:
        """Run `warmup_steps` real steps to trigger compilation, then roll everything back.

        The second half of the steps runs with every scheduled switch on (late QAT, recurrence), so
        each graph variant the run will need is compiled before the timer starts.
        """
        steps = self.p.cfg.train.warmup_steps
        if steps <= 0:
            return
        model_state = {k: v.detach().clone() for k, v in self.p.model.state_dict().items()}
        opt_states = [copy.deepcopy(opt.state_dict()) for opt in self.p.optimizers]
        first = self.schedule.at(0, 0.0)
        variants = (first, dataclasses.replace(first, qat_active=self.schedule.late_qat_threshold > 0,
                                               recurrence_active=self.schedule.recurrence_active(1 << 62, 1.0)))
        self.watch.reset(0)
        for i in range(steps):
            self._step(0, variants[0] if i < (steps + 1) // 2 else variants[1], read=i == steps - 1)
            self.p.logger.log(f"warmup_step:{i + 1}/{steps}")
        self._apply_switches(first)
        self.p.model.load_state_dict(model_state, strict=True)
        for opt, state in zip(self.p.optimizers, opt_states, strict=True):
            opt.load_state_dict(state)
        self.loader = self.p.make_loader()
        self._mark_warm()

    def _mark_warm(self) -> None:
        if self.p.recompiles is not None:
            self.p.recompiles.mark_warm()
        self._warm = True

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
        step_cap = t.iterations if t.iterations > 0 else math.inf  # 0: only the wallclock cap ends the run
        progress = Progress(t.iterations or None, self.p.ctx.is_main, initial=s.step)
        self.p.model.train()
        self.watch.reset(s.step)
        try:
            self._start_timer()
            while s.step < step_cap and not s.stopped_early:
                if t.val_loss_every > 0 and s.step > 0 and s.step % t.val_loss_every == 0:
                    self._stop_timer()
                    self._validate(s.step)
                    self._start_timer()
                values = self.schedule.at(s.step, self._elapsed_ms())
                self._log_switch_changes(values)
                checkpoint = (writes_checkpoints(cfg) and (s.step + 1) % t.checkpoint_every == 0
                              and s.step + 1 < step_cap)
                synced = self._is_log_step(s.step + 1) or checkpoint or s.step + 1 >= step_cap
                loss = self._step(s.step, values, read=synced)
                if self.p.averagers is not None:
                    self.p.averagers.update(self.p.model, s.step + 1, values.lr_scale)
                s.step += 1
                s.train_tokens += tokens_per_step
                self._count_recompiles()
                if loss is not None:
                    self._stop_timer()
                    self._log_step(loss, values, progress)
                    if checkpoint:  # only with train.checkpoint_every > 0: other runs do not import (or ship) it
                        from pgolf.train.checkpoint import save_trainer_checkpoint

                        save_trainer_checkpoint(self)
                    if s.step < step_cap:
                        self._start_timer()
                else:
                    progress.update(s.step)
                if any_rank(self.p.ctx, cap_ms is not None and self._elapsed_ms() >= cap_ms) and s.step < step_cap:
                    s.stopped_early = True
                    self._stop_timer()
                    s.last_train_loss = self._read_loss()
                    self.p.logger.log(f"stopping_early: wallclock_cap train_time:{s.training_time_ms:.0f}ms "
                                      f"step:{s.step}/{t.iterations}")
            self._stop_timer()
        finally:
            progress.close()
        self.p.clock.add("train", s.training_time_ms / 1000.0, "train")
        if self.p.recompiles is not None:
            self.p.logger.log(f"recompiles_after_warmup:{s.recompiles} (limit {self.p.recompiles.limit})")
        return s

    # ---- the clock: host time between synchronisation points ----------------------------------
    def _start_timer(self) -> None:
        self._timer_start = time.perf_counter()

    def _elapsed_ms(self) -> float:
        """Training time so far, on host time since the last sync (the device may lag by up to a step)."""
        running = 0.0 if self._timer_start is None else 1000.0 * (time.perf_counter() - self._timer_start)
        return self.state.training_time_ms + running

    def _stop_timer(self) -> None:
        """Wait for the device, then fold the exact elapsed time into `training_time_ms`."""
        if self._timer_start is None:
            return
        self.p.clock.sync()
        self.state.training_time_ms = self._elapsed_ms()
        self._timer_start = None

    def _is_log_step(self, step: int) -> bool:
        t = self.p.cfg.train
        return t.train_log_every > 0 and (step <= 10 or step % t.train_log_every == 0 or step == t.iterations)

    def _count_recompiles(self) -> None:
        """The first step compiles the graphs when no priming ran; later graphs are recompilations."""
        if self.p.recompiles is None:
            return
        if not self._warm:
            self._mark_warm()
            return
        count = self.p.recompiles.check(self.state.step)
        if count > self.state.recompiles:
            self.p.logger.log(f"recompile: {count - self.state.recompiles} new graph(s) at step {self.state.step}, "
                              f"{count} since warm-up")
            self.state.recompiles = count

    def _log_switch_changes(self, values: StepValues) -> None:
        previous, self._last_values = self._last_values, values
        for name in ("qat_active", "recurrence_active"):
            now = getattr(values, name)
            if (previous is None or now != getattr(previous, name)) and (now or previous is not None):
                self.p.logger.log(f"switch:{name}={now} step:{self.state.step} lr_scale:{values.lr_scale:.4f} "
                                  f"progress:{values.progress:.4f}")

    def _log_step(self, value: float, values: StepValues, progress: Progress) -> None:
        """At a synchronisation point: the loss is already on the host."""
        s, t = self.state, self.p.cfg.train
        s.last_train_loss = value
        record = {"step": s.step, "train_loss": value, "lr_scale": values.lr_scale,
                  "train_time_ms": round(s.training_time_ms, 3), "tokens": s.train_tokens,
                  "qat": values.qat_active, "recurrence": values.recurrence_active, "recompiles": s.recompiles}
        progress.update(s.step, loss=value)
        if self._is_log_step(s.step):
            self.p.logger.log(f"step:{s.step}/{t.iterations} train_loss:{value:.4f} "
                              f"train_time:{s.training_time_ms:.0f}ms step_avg:{s.training_time_ms / s.step:.2f}ms")
            self.p.logger.metrics(record)
