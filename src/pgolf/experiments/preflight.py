"""`pgolf preflight`: the CPU checks to pass before renting GPUs (USER_NEEDS need 10).

Imports, config, model creation, one forward/backward, code size of the single-file export, the
artifact size of a random init packed under the config's quantization policy, a step-time
projection for N GPUs from a stated per-GPU throughput, and the quantization error of that init.
Each check is green or red with one line of detail; no data is read.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pgolf.artifact.budget import BUDGET_BYTES
from pgolf.config import Config
from pgolf.errors import ConfigError
from pgolf.export import shipped_code
from pgolf.model.gpt import GPT, build_model, count_parameters, flops_per_token
from pgolf.packing import pack_state_dict
from pgolf.quant.container import dequantize
from pgolf.quant.int8 import quantize_state_dict_int8

# The naive baseline's measured rate on 8×H100 (43.54 ms/step at 524,288 tokens, PERF_ANCHORS) under
# pgolf's FLOP count (`flops_per_token`): about 196 TFLOP/s per GPU.
BASELINE_TFLOPS_PER_GPU = 196.5
MAX_RELATIVE_QUANT_ERROR = 1.0  # 100 %: the tensor is rounded away entirely
FORWARD_TOKENS = 256
REQUIRED_MODULES = ("torch", "numpy", "sentencepiece", "zstandard", "brotli", "tomli_w")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class _Context:
    cfg: Config | None = None
    model: GPT | None = None
    code_bytes: int = 0  # the smallest shippable export (minified + lzma)
    plain_code_bytes: int = 0


def _imports(_: _Context) -> Check:
    missing = []
    for name in REQUIRED_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    fast = [n for n in ("flash_attn_interface", "flash_attn") if importlib.util.find_spec(n) is not None]
    extra = f"; FlashAttention: {', '.join(fast) or 'not installed (SDPA fallback)'}"
    if missing:
        return Check("imports", False, f"missing {', '.join(missing)}: pip install them" + extra)
    return Check("imports", True, f"{', '.join(REQUIRED_MODULES)} import" + extra)


def _model(ctx: _Context) -> Check:
    assert ctx.cfg is not None
    torch.manual_seed(ctx.cfg.run.seed)
    ctx.model = build_model(ctx.cfg.model, torch.device("cpu"))
    m = ctx.cfg.model
    return Check("model", True, f"{count_parameters(ctx.model):,} parameters ({m.num_layers} layers × {m.model_dim}, "
                                f"vocab {m.vocab_size})")


def _forward_backward(ctx: _Context) -> Check:
    assert ctx.cfg is not None and ctx.model is not None
    seq = min(ctx.cfg.train.train_seq_len, FORWARD_TOKENS)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, ctx.cfg.model.vocab_size, (1, seq + 1), generator=generator)
    start = time.perf_counter()
    loss = ctx.model(tokens[:, :-1], tokens[:, 1:])
    loss.backward()
    seconds = time.perf_counter() - start
    bad = [n for n, p in ctx.model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    ctx.model.zero_grad(set_to_none=True)
    value = float(loss.detach())
    detail = (f"loss {value:.3f} at init (ln V = {math.log(ctx.cfg.model.vocab_size):.3f}), "
              f"1×{seq} tokens in {seconds:.2f} s")
    if not math.isfinite(value) or bad:
        return Check("forward/backward", False, f"{detail}; missing or non-finite gradients: {', '.join(bad[:3])}")
    return Check("forward/backward", True, detail + ", every gradient finite")


def _code_size(ctx: _Context) -> Check:
    assert ctx.cfg is not None
    plain = shipped_code(ctx.cfg, "plain", concrete_data=False)
    packed = shipped_code(ctx.cfg, "compressed", concrete_data=False)
    ctx.code_bytes, ctx.plain_code_bytes = packed.bytes, plain.bytes
    return Check("code size", plain.bytes < BUDGET_BYTES,
                 f"train_gpt.py export {plain.bytes:,} bytes ({len(plain.modules)} modules); "
                 f"{packed.bytes:,} as it ships ({packed.form})")


def trained_like(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """The state with every matrix drawn as unit Gaussians. Trained matrices fill the quantization grid
    and compress about like noise (the baseline packs 17.06M parameters into 15.8 MB); the init's zeros
    and small values would compress far better and make the projection much too small."""
    generator = torch.Generator().manual_seed(seed)
    return {name: torch.randn(t.shape, generator=generator).to(t.dtype)
            if t.is_floating_point() and t.ndim >= 2 else t.detach()
            for name, t in state.items()}


def _artifact_projection(ctx: _Context) -> Check:
    assert ctx.cfg is not None and ctx.model is not None
    with tempfile.TemporaryDirectory() as folder:
        packed = pack_state_dict(trained_like(ctx.model.state_dict()), ctx.cfg, Path(folder) / "artifact.pgolf", {})
    model = packed.model_bytes
    total = ctx.code_bytes + model
    plain_fits = ctx.plain_code_bytes + model <= BUDGET_BYTES
    detail = (f"{ctx.cfg.quant.scheme} + {packed.codec} on trained-like weights (matrices as unit Gaussians): model "
              f"{model:,} + code {ctx.code_bytes:,} (minified + lzma) = {total:,} of {BUDGET_BYTES:,} bytes; "
              f"with the plain export {ctx.plain_code_bytes + model:,} "
              f"({'fits' if plain_fits else 'over: submit --minify --compress'})")
    return Check("artifact size", total <= BUDGET_BYTES, detail)


def project_steps(cfg: Config, gpus: int, tflops: float) -> tuple[float, int]:
    """(ms per step, steps reached) on `gpus` GPUs at `tflops` per GPU under the config's limits."""
    t = cfg.train
    step_s = flops_per_token(cfg.model, t.train_seq_len) * t.train_batch_tokens / (gpus * tflops * 1e12)
    steps = min(t.iterations, int(t.max_wallclock_seconds / step_s)) if t.max_wallclock_seconds > 0 else t.iterations
    return 1000 * step_s, steps


def _step_time(ctx: _Context, gpus: int, tflops: float) -> Check:
    assert ctx.cfg is not None
    t = ctx.cfg.train
    step_ms, steps = project_steps(ctx.cfg, gpus, tflops)
    detail = (f"≈ {step_ms:.1f} ms/step on {gpus}×H100 at {tflops:g} TFLOP/s per GPU (stated) → ≈ {steps:,} steps "
              f"({'wallclock cap' if steps < t.iterations else 'iteration limit'}), "
              f"{steps * t.train_batch_tokens / 1e9:.2f}B tokens")
    if steps < t.warmdown_iters:
        return Check("step time", False, f"{detail}; fewer than train.warmdown_iters={t.warmdown_iters}: "
                     "the warm-down would start at step 0")
    return Check("step time", True, detail)


def _quant_error(ctx: _Context) -> Check:
    assert ctx.model is not None
    state = {k: v.detach() for k, v in ctx.model.state_dict().items()}
    restored = dequantize(quantize_state_dict_int8(state))
    errors = {name: float((restored[name].float() - t.float()).norm() / t.float().norm().clamp_min(1e-12))
              for name, t in state.items() if t.is_floating_point() and t.float().norm() > 0}
    worst = max(errors, key=errors.__getitem__)
    detail = (f"relative RMS error after quantize → dequantize: worst {errors[worst]:.2%} ({worst}), "
              f"mean {sum(errors.values()) / len(errors):.2%} over {len(errors)} tensors")
    if errors[worst] >= MAX_RELATIVE_QUANT_ERROR:
        return Check("quantization error", False, detail + ": that tensor is rounded away entirely")
    return Check("quantization error", True, detail)


def run_preflight(load: Callable[[], Config], gpus: int = 8, tflops: float = BASELINE_TFLOPS_PER_GPU) -> list[Check]:
    """Every check in order; a red config skips the checks that need it."""
    ctx = _Context()
    checks = [_imports(ctx)]
    try:
        ctx.cfg = load()
        checks.append(Check("config", True, f"preset {ctx.cfg.run.preset or '(none)'} resolves and validates"))
    except ConfigError as exc:
        return [*checks, Check("config", False, str(exc))]
    steps: Sequence[Callable[[_Context], Check]] = (
        _model, _forward_backward, _code_size, _artifact_projection, lambda c: _step_time(c, gpus, tflops),
        _quant_error)
    return checks + [step(ctx) for step in steps]


def render(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'GREEN' if c.ok else 'RED  '}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = [c.name for c in checks if not c.ok]
    lines.append("preflight: all green" if not failed else f"preflight: RED: {', '.join(failed)}")
    return "\n".join(lines)
