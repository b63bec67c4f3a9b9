"""Atomic checkpoints for exact resume: what a trainer's state is, how it is written and restored.

Checkpoints hold only tensors and plain Python values, so they load with
`torch.load(weights_only=True)`: nothing in them can execute code. Only runs that write checkpoints
(train.checkpoint_every > 0) or resume import this module; an exported script never resumes.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from pgolf.errors import UserError
from pgolf.utils import atomic_write_bytes

if TYPE_CHECKING:
    from pgolf.train.trainer import Trainer


def capture_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["kind"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: the run saved none (set train.checkpoint_every > 0) "
                        "or it is not a run directory")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure means an unusable file
        raise UserError(f"checkpoint {path} cannot be read ({exc}): it is corrupt; "
                        "delete it to restart the run") from None


def trainer_payload(trainer: Trainer) -> dict[str, Any]:
    """What exact resume needs: the step counters, the model, each optimizer's and the loader's state, the RNGs
    and the weight averages."""
    p, s = trainer.p, trainer.state
    return {
        "step": s.step, "training_time_ms": s.training_time_ms, "train_tokens": s.train_tokens,
        "model": {k: v.detach().cpu() for k, v in p.model.state_dict().items()},
        "optimizers": [opt.state_dict() for opt in p.optimizers],
        "loader": trainer.loader.state_dict(),
        "rng": capture_rng(),
        "averaging": p.averagers.state_dict() if p.averagers is not None else {},
    }


def restore_trainer(trainer: Trainer, payload: dict[str, Any]) -> None:
    """Put `trainer` back where `trainer_payload` found it."""
    from pgolf.train.trainer import TrainState

    p = trainer.p
    p.model.load_state_dict(payload["model"], strict=True)
    for opt, state in zip(p.optimizers, payload["optimizers"], strict=True):
        opt.load_state_dict(state)
    trainer.loader.load_state_dict(payload["loader"])
    restore_rng(payload["rng"])
    if p.averagers is not None:
        p.averagers.load_state_dict(payload["averaging"])
    trainer.state = TrainState(step=payload["step"], training_time_ms=payload["training_time_ms"],
                               train_tokens=payload["train_tokens"])


def save_trainer_checkpoint(trainer: Trainer) -> None:
    """Write `trainer`'s checkpoint where its run keeps it (none without a path). Every rank builds the payload
    (an optimizer's state may need all of them); rank 0 writes it."""
    p = trainer.p
    if p.checkpoint_path is None:
        return
    with p.clock.phase("checkpoint"):
        payload = trainer_payload(trainer)
        if p.ctx.is_main:
            save_checkpoint(p.checkpoint_path, payload)
