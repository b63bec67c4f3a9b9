"""Import the record scripts of ../shared/records on CPU and compare them with pgolf.

The records' `train_gpt.py` files are reference material, imported unchanged. They read their
hyperparameters from the environment when their classes are defined, import FlashAttention 3 and wrap
functions in `torch.compile` at import time. `import_record` therefore imports each one under a unique
module name with: the asked environment variables set (and restored afterwards), a stand-in
`flash_attn_interface` whose `flash_attn_func` runs PyTorch SDPA in the same (batch, seq, heads, dim)
layout, and `torch.compile` replaced by the identity while the module body runs (the scripts compile
again in `main()`, which the tests never call).

Differences are measured as `max|a − b| / max|b|`: relative to the tensor's scale, so that entries near
zero do not blow the measure up.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

RECORDS_DIR = Path(os.environ.get("PGOLF_RECORDS_DIR", Path(__file__).resolve().parents[3] / "shared" / "records"))
TOLERANCE = 1e-5


def records_dir() -> Path:
    """The records folder, or a clean skip of the calling test when it is absent."""
    if not (RECORDS_DIR / "README.md").is_file():
        pytest.skip(f"record scripts not found at {RECORDS_DIR}: check out ../shared/records beside the repository "
                    "(or set PGOLF_RECORDS_DIR) to run the parity tests")
    return RECORDS_DIR


def flash_attn_func(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, **_: object) -> Tensor:
    """FlashAttention 3's call on (batch, seq, heads, head_dim) tensors, computed by SDPA (GQA allowed)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                                         enable_gqa=q.size(2) != k.size(2))
    return out.transpose(1, 2)


def _flash_module() -> types.ModuleType:
    module = types.ModuleType("flash_attn_interface")
    module.flash_attn_func = flash_attn_func  # type: ignore[attr-defined]
    return module


def _identity_compile(fn=None, **_: object):
    return fn if fn is not None else (lambda f: f)


@contextmanager
def _record_import_context(env: Mapping[str, str]) -> Iterator[None]:
    saved_env = {name: os.environ.get(name) for name in env}
    saved_flash = sys.modules.get("flash_attn_interface")
    saved_compile = torch.compile
    os.environ.update(env)
    sys.modules["flash_attn_interface"] = _flash_module()
    torch.compile = _identity_compile  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = saved_compile  # type: ignore[assignment]
        if saved_flash is None:
            sys.modules.pop("flash_attn_interface", None)
        else:
            sys.modules["flash_attn_interface"] = saved_flash
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_IMPORTED: dict[tuple[str, tuple[tuple[str, str], ...]], types.ModuleType] = {}


def import_record(folder: str, env: Mapping[str, str] | None = None, script: str = "train_gpt.py") -> types.ModuleType:
    """`shared/records/<folder>/<script>` as a module (one per folder, script and environment, cached)."""
    env = dict(env or {})
    key = (f"{folder}/{script}", tuple(sorted(env.items())))
    if key in _IMPORTED:
        return _IMPORTED[key]
    path = records_dir() / folder / script
    name = f"record_{folder}_{len(_IMPORTED)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _record_import_context(env):
        sys.modules[name] = module
        spec.loader.exec_module(module)
    _IMPORTED[key] = module
    return module


def seeded(seed: int) -> None:
    torch.manual_seed(seed)


def fp32(model: torch.nn.Module) -> torch.nn.Module:
    """A model in fp32 on CPU in train mode (the records build theirs in fp32 before casting on GPU)."""
    return model.float().cpu().train()


def max_rel_diff(a: Tensor, b: Tensor) -> float:
    """max|a − b| / max|b| (0 when both are all zero; inf when only b is)."""
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    num = (a - b).abs().max().item() if a.numel() else 0.0
    den = b.abs().max().item() if b.numel() else 0.0
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def state_diffs(ours: Mapping[str, Tensor], theirs: Mapping[str, Tensor]) -> dict[str, float]:
    """Per-name relative difference of two state dicts with the same names."""
    assert set(ours) == set(theirs), sorted(set(ours) ^ set(theirs))[:5]
    return {name: max_rel_diff(ours[name], theirs[name]) for name in theirs}


def assert_close(a: Tensor, b: Tensor, what: str, tol: float = TOLERANCE) -> None:
    diff = max_rel_diff(a, b)
    assert diff <= tol, f"{what}: max relative difference {diff:.3g} > {tol:g}"


def assert_states_close(ours: Mapping[str, Tensor], theirs: Mapping[str, Tensor], what: str,
                        tol: float = TOLERANCE) -> None:
    diffs = state_diffs(ours, theirs)
    worst = max(diffs, key=diffs.__getitem__)
    assert diffs[worst] <= tol, f"{what}: {worst} differs by {diffs[worst]:.3g} > {tol:g}"


def val_batch(vocab_size: int, batch: int, seq_len: int, seed: int = 0, bos_id: int | None = 1) -> tuple[Tensor, Tensor]:
    """(inputs, targets) of random tokens with a few BOS tokens inside (document boundaries matter)."""
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (batch, seq_len + 1), generator=gen)
    if bos_id is not None:
        tokens[:, :: max(2, seq_len // 3)] = bos_id
    return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()


def pgolf_step(model: torch.nn.Module, cfg, x: Tensor, y: Tensor) -> None:
    """One training step of pgolf at step 0, in the trainer's order: backward, gradient sync, the step-0
    schedule values (LR multiplier, Muon momentum, WD taper), gradient clipping, every optimizer."""
    from pgolf.optim.factory import build_optimizers, set_learning_rates, set_muon_weight_decay
    from pgolf.optim.parallel_muon import ParallelMuon
    from pgolf.optim.schedule import Schedule

    optimizers, muon = build_optimizers(model, cfg, torch.device("cpu"))
    values = Schedule.from_config(cfg).at(0, 0.0)
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    model(x, y).backward()
    parallel = isinstance(muon, ParallelMuon)
    if parallel:
        muon.sync_gradients()
    for group in muon.param_groups:
        group["momentum"] = values.muon_momentum
    set_learning_rates(optimizers, values.lr_scale)
    set_muon_weight_decay(muon, values.muon_wd_scale)
    if cfg.optim.grad_clip_norm > 0:
        if parallel:
            muon.clip_grad_norm_(cfg.optim.grad_clip_norm)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip_norm)
    for opt in optimizers:
        opt.step()


@contextmanager
def cheap_init() -> Iterator[None]:
    """Model construction without orthogonal initialisation (QR of every matrix: tens of seconds on 2 cores).

    For tests that overwrite every weight afterwards: `orthogonal_` fills with N(0, 0.02²) instead.
    """
    saved = torch.nn.init.orthogonal_

    def normal(tensor: Tensor, gain: float = 1.0, generator: object = None) -> Tensor:
        with torch.no_grad():
            return tensor.normal_(0.0, 0.02)

    torch.nn.init.orthogonal_ = normal  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.nn.init.orthogonal_ = saved  # type: ignore[assignment]


def pgolf_model(cfg, state: Mapping[str, Tensor]) -> torch.nn.Module:
    """pgolf's GPT for `cfg.model` in fp32 holding `state`."""
    from pgolf.model.gpt import GPT

    with cheap_init():
        model = fp32(GPT(cfg.model))
    model.load_state_dict(state, strict=True)
    return model


def perturbed(model: torch.nn.Module, seed: int, std: float = 0.02) -> dict[str, Tensor]:
    """The model's state with N(0, std²) added to every tensor: zero-initialised parts become non-zero, so that
    every path (and its gradient) is exercised."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v + torch.randn(v.shape, generator=gen) * std if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}
