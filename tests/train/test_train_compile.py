"""torch.compile: schedule switches stay live in the graph, recompiles are counted, failures fall back."""

from __future__ import annotations

import pytest
import torch

from pgolf.config import load_config
from pgolf.model.gpt import GPT, build_model
from pgolf.optim.factory import qat_bits_for
from pgolf.quant.qat import QATForward
from pgolf.train.distributed import DistContext
from pgolf.train.metrics import RunLogger
from pgolf.train.phases import PhaseClock
from pgolf.train.runtime import RecompileCounter, RecompileLimitError, compile_enabled, maybe_compile
from pgolf.train.setup import prepare_training
from testkit import tiny_overrides


def _model() -> GPT:
    cfg = load_config("tiny", env={}, overrides=["model.num_layers=2", "model.model_dim=64", "model.num_heads=2",
                                                 "model.num_kv_heads=1"])
    torch.manual_seed(0)
    model = build_model(cfg.model, torch.device("cpu"))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.05)
    return model


def test_late_qat_flag_is_not_constant_folded() -> None:
    """USER_NEEDS 11: flipping the QAT switch after compilation changes the loss, with no recompilation."""
    model = _model()
    active = torch.zeros(())
    qat = QATForward(model, qat_bits_for(model, 3), active)
    forward, info = maybe_compile(qat, True, dynamic=False, fullgraph=True, backend="aot_eager")
    x, y = torch.randint(0, 1024, (2, 16)), torch.randint(0, 1024, (2, 16))
    forward(x, y)
    counter = RecompileCounter(limit=0)  # from the second call on, nothing may recompile (rotary tables included)
    off = forward(x, y)
    active.fill_(1.0)
    on = forward(x, y)
    active.fill_(0.0)
    again = forward(x, y)
    assert info.enabled and info.reason == "compiled"
    active.fill_(1.0)
    assert torch.equal(on, qat(x, y)) and not torch.equal(on, off) and torch.equal(again, off)
    assert counter.check(step=3) == 0


def test_a_python_constant_that_changes_is_counted_and_stopped() -> None:
    scale_fn, _ = maybe_compile(lambda x, scale: x * scale, True, backend="eager", dynamic=False)
    x = torch.ones(3)
    scale_fn(x, 1.0)
    counter = RecompileCounter(limit=1)
    scale_fn(x, 0.5)  # a float argument is specialised: each new value is a new graph
    assert counter.check(step=1) == 1
    scale_fn(x, 0.25)
    with pytest.raises(RecompileLimitError, match=r"train\.max_recompiles: 2 graphs"):
        counter.check(step=2)


def test_first_call_failure_falls_back_to_eager() -> None:
    def data_dependent(x: torch.Tensor) -> torch.Tensor:
        if x.sum().item() > 0:  # a graph break: fullgraph=True refuses it on the first call
            return x * 2
        return x

    reasons: list[str] = []
    fn, info = maybe_compile(data_dependent, True, on_fallback=reasons.append, fullgraph=True, backend="eager")
    assert torch.equal(fn(torch.ones(2)), torch.full((2,), 2.0))
    assert not info.enabled and info.reason.startswith("compile failed on first call") and reasons == [info.reason]
    assert torch.equal(fn(-torch.ones(2)), -torch.ones(2))


def test_compile_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config("tiny", env={}, overrides=["train.compile=on"])
    assert compile_enabled(cfg, torch.device("cpu"))
    monkeypatch.setenv("TORCH_COMPILE_DISABLE", "1")
    assert not compile_enabled(cfg, torch.device("cpu"))
    fn, info = maybe_compile(torch.sin, False)
    assert info.reason == "disabled" and torch.equal(fn(torch.ones(1)), torch.sin(torch.ones(1)))


def _losses(small_dataset, compile_mode: str) -> list[float]:
    cfg = load_config(overrides=tiny_overrides(small_dataset, **{"train.compile": compile_mode, "train.iterations": 3}),
                      env={})
    ctx = DistContext(0, 1, 0, torch.device("cpu"), None)
    setup = prepare_training(cfg, ctx, None, RunLogger(None, enabled=False), PhaseClock())
    losses = []
    for step in range(1, 4):
        cfg.train.iterations = step
        losses.append(setup.trainer.fit().last_train_loss)
    return losses


def test_compiled_training_matches_eager(small_dataset) -> None:
    eager = _losses(small_dataset, "off")
    compiled = _losses(small_dataset, "on")
    assert compiled == pytest.approx(eager, rel=1e-4, abs=1e-4)
