"""Import a record's own `train_gpt.py` on CPU, for parity checks (tests/parity, `pgolf bench parity`).

The records' scripts are reference material, imported unchanged. They read their hyperparameters from the
environment when their classes are defined, import FlashAttention 3 (and, the later ones, Triton) and wrap
functions in `torch.compile` at import time. `import_record` therefore runs each one under a unique module name
with: the asked environment variables set (restored afterwards), a stand-in `flash_attn_interface` whose
`flash_attn_func` / `flash_attn_varlen_func` run PyTorch SDPA in the same layouts, a stand-in `triton` where
none is installed (its kernels are defined, never launched: the CPU paths of the scripts are eager), and
`torch.compile` replaced by the identity while the module body runs (the scripts compile again in `main()`,
which is never called).
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import types
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pgolf.errors import UserError

DEFAULT_RECORDS_DIR = Path(__file__).resolve().parents[4] / "shared" / "records"


def records_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """`override`, else $PGOLF_RECORDS_DIR, else ../shared/records beside the repository."""
    return Path(override or os.environ.get("PGOLF_RECORDS_DIR") or DEFAULT_RECORDS_DIR)


def flash_attn_func(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, **_: object) -> Tensor:
    """FlashAttention 3's call on (batch, seq, heads, head_dim) tensors, computed by SDPA (GQA allowed)."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                                         enable_gqa=q.size(2) != k.size(2))
    return out.transpose(1, 2)


def flash_attn_varlen_func(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor,
                           max_seqlen_q: int = 0, max_seqlen_k: int = 0, causal: bool = True,
                           **_: object) -> Tensor:
    """FlashAttention 3's varlen call on (tokens, heads, head_dim) tensors: causal attention within each segment
    of `cu_seqlens_q` (the padding's zero-length segments skipped), one SDPA call per segment."""
    assert torch.equal(cu_seqlens_q, cu_seqlens_k), "the stand-in handles self-attention only"
    out = torch.empty_like(q)
    bounds = cu_seqlens_q.tolist()
    for start, end in itertools.pairwise(bounds):
        if end > start:
            out[start:end] = flash_attn_func(q[None, start:end], k[None, start:end], v[None, start:end], causal)[0]
    return out


def _flash_module() -> types.ModuleType:
    module = types.ModuleType("flash_attn_interface")
    module.flash_attn_func = flash_attn_func  # type: ignore[attr-defined]
    module.flash_attn_varlen_func = flash_attn_varlen_func  # type: ignore[attr-defined]
    return module


class _Anything(types.ModuleType):
    """A module whose every attribute is another such module and which calls as an identity decorator: enough
    for `@triton.jit`, `tl.constexpr` annotations and `from triton.tools.tensor_descriptor import ...`."""

    def __getattr__(self, name: str) -> _Anything:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(f"{self.__name__}.{name}")

    def __call__(self, fn: Any = None, *args: object, **kwargs: object) -> Any:
        return fn if callable(fn) else (lambda f: f)


def _triton_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for the Triton modules the records import, when Triton itself is not installed."""
    if importlib.util.find_spec("triton") is not None:
        return {}
    names = ("triton", "triton.language", "triton.tools", "triton.tools.tensor_descriptor")
    return {name: _Anything(name) for name in names}


def _identity_compile(fn: Callable[..., Any] | None = None, **_: object) -> Any:
    """`torch.compile` stand-in while a record imports: the function itself, bare or as a decorator."""
    return fn if fn is not None else (lambda f: f)


@contextmanager
def _record_import_context(env: Mapping[str, str]) -> Iterator[None]:
    saved_env = {name: os.environ.get(name) for name in env}
    stand_ins = {"flash_attn_interface": _flash_module(), **_triton_modules()}
    saved_modules = {name: sys.modules.get(name) for name in stand_ins}
    saved_compile = torch.compile
    os.environ.update(env)
    sys.modules.update(stand_ins)
    torch.compile = _identity_compile  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = saved_compile  # type: ignore[assignment]
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


_IMPORTED: dict[tuple[str, str, tuple[tuple[str, str], ...]], types.ModuleType] = {}


def import_record(folder: str, env: Mapping[str, str] | None = None, root: Path | None = None,
                  script: str = "train_gpt.py") -> types.ModuleType:
    """`<records>/<folder>/<script>` as a module (one per folder, script and environment, cached)."""
    env = dict(env or {})
    base = root or records_dir()
    key = (str(base), f"{folder}/{script}", tuple(sorted(env.items())))
    if key in _IMPORTED:
        return _IMPORTED[key]
    path = base / folder / script
    if not path.is_file():
        raise UserError(f"record script {path} not found: pass the records folder (shared/records) or set "
                        "PGOLF_RECORDS_DIR")
    name = f"pgolf_record_{folder}_{len(_IMPORTED)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with _record_import_context(env):
        sys.modules[name] = module
        spec.loader.exec_module(module)
    _IMPORTED[key] = module
    return module


@contextmanager
def cheap_init() -> Iterator[None]:
    """Model construction without orthogonal initialisation (a QR of every matrix: tens of seconds on 2 cores),
    for models whose every weight is overwritten afterwards: `orthogonal_` fills with N(0, 0.02²) instead."""
    saved = torch.nn.init.orthogonal_

    def normal(tensor: Tensor, gain: float = 1.0, generator: object = None) -> Tensor:
        with torch.no_grad():
            return tensor.normal_(0.0, 0.02)

    torch.nn.init.orthogonal_ = normal  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.nn.init.orthogonal_ = saved  # type: ignore[assignment]


def max_rel_diff(a: Tensor, b: Tensor) -> float:
    """max|a − b| / max|b| (0 when both are all zero; inf when only b is): relative to the tensor's scale, so
    that entries near zero do not blow the measure up."""
    a, b = a.detach().double(), b.detach().double()
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    num = (a - b).abs().max().item() if a.numel() else 0.0
    den = b.abs().max().item() if b.numel() else 0.0
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def perturbed(model: torch.nn.Module, seed: int, std: float = 0.02) -> dict[str, Tensor]:
    """The model's state with N(0, std²) added to every float tensor: zero-initialised parts become non-zero,
    so that every path (and its gradient) is exercised."""
    gen = torch.Generator().manual_seed(seed)
    return {k: v + torch.randn(v.shape, generator=gen) * std if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}
