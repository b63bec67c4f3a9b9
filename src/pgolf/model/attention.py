"""Grouped-query causal self-attention with RoPE, QK-norm and a learnable per-head query gain.

Optional techniques are parts plugged in at construction, never flags tested in `forward`:
value mixers (value embeddings, value residual) edit v before attention, output transforms (XSA,
output gates) edit the per-head output before the projection, and the attention core is either the
plain causal kernel or the document-isolated one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from pgolf.model.backend import causal_attention
from pgolf.model.context import ForwardContext
from pgolf.model.layers import CastedLinear, declares_controls, rms_norm

ValueMixer = Callable[[Tensor, ForwardContext], Tensor]  # (v, ctx) → v, v: (batch, seq, kv_heads, head_dim)
OutputTransform = Callable[[Tensor, Tensor, Tensor], Tensor]  # (y, v, x) → y, y: (batch, seq, heads, head_dim)


class Rotary(nn.Module):
    """RoPE tables in the "half split" convention over `dim` rotated dims, cached per length and device.

    With `ntk_train_len` > 0 a sequence longer than it uses the NTK-aware base
    base·(L/ntk_train_len)^(dim/(dim−2)) (PR #635 and its successors build every Rotary with such a length).
    """

    inv_freq: Tensor  # a non-persistent buffer

    def __init__(self, dim: int, base: float, ntk_train_len: int = 0) -> None:
        super().__init__()
        self.dim = dim
        self.base = base
        self.ntk_train_len = ntk_train_len
        self.register_buffer("inv_freq", self._inv_freq(base), persistent=False)
        self._cache: tuple[int, torch.device, Tensor, Tensor] | None = None

    def _inv_freq(self, base: float, device: torch.device | None = None) -> Tensor:
        return 1.0 / (base ** (torch.arange(0, self.dim, 2, dtype=torch.float32, device=device) / self.dim))

    def forward(self, seq_len: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        if torch.compiler.is_compiling():
            # A traced graph computes the tables itself: filling a Python-side cache during the first call
            # would leave a guard on it and recompile the whole model on the second step.
            cos, sin = self._tables(seq_len, device)
            return cos.to(dtype), sin.to(dtype)
        if self._cache is None or self._cache[0] != seq_len or self._cache[1] != device:
            self._cache = (seq_len, device, *self._tables(seq_len, device))
        _, _, cos, sin = self._cache
        return cos.to(dtype), sin.to(dtype)

    def _tables(self, seq_len: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if 0 < self.ntk_train_len < seq_len:
            scale = seq_len / self.ntk_train_len
            inv_freq = self._inv_freq(self.base * scale ** (self.dim / (self.dim - 2)), device)
        else:
            inv_freq = self.inv_freq.to(device)
        positions = torch.arange(seq_len, device=device, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)
        return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


def apply_partial_rotary(x: Tensor, cos: Tensor, sin: Tensor, dims: int) -> Tensor:
    """Partial RoPE: rotate the first `dims` dims of each head (half split within them); the rest pass."""
    return torch.cat((apply_rotary(x[..., :dims], cos, sin), x[..., dims:]), dim=-1)


def _causal_core(q: Tensor, k: Tensor, v: Tensor, ctx: ForwardContext) -> Tensor:
    return causal_attention(q, k, v)


def _document_core(q: Tensor, k: Tensor, v: Tensor, ctx: ForwardContext) -> Tensor:
    if ctx.documents is None:
        raise RuntimeError("document-isolated attention needs ForwardContext.documents (GPT.hidden builds it)")
    return ctx.documents(q, k, v)


@declares_controls("q_gain")
class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, num_kv_heads: int, rope_base: float, qk_gain_init: float,
                 rope_dims: int = 0, rope_train_seq_len: int = 0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = dim // num_heads
        kv_dim = num_kv_heads * self.head_dim
        self.c_q = CastedLinear(dim, dim)
        self.c_k = CastedLinear(dim, kv_dim)
        self.c_v = CastedLinear(dim, kv_dim)
        self.proj = CastedLinear(dim, dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((num_heads,), qk_gain_init, dtype=torch.float32))
        rotated = rope_dims or self.head_dim
        self.rotary = Rotary(rotated, rope_base, rope_train_seq_len)
        self._rotate = apply_rotary if rotated == self.head_dim else partial(apply_partial_rotary, dims=rotated)
        self._core = _causal_core
        self._value_mixers: list[ValueMixer] = []
        self._output_transforms: list[OutputTransform] = []

    # ---- construction-time parts ----------------------------------------------------------------
    def add_value_mixer(self, name: str, mixer: ValueMixer) -> None:
        """Plug in a v → v step (applied in order); `nn.Module` mixers are registered under `name`."""
        if isinstance(mixer, nn.Module):
            self.add_module(name, mixer)
        self._value_mixers.append(mixer)

    def add_output_transform(self, name: str, transform: OutputTransform) -> None:
        """Plug in a y → y step on the per-head output (applied in order, before the projection)."""
        if isinstance(transform, nn.Module):
            self.add_module(name, transform)
        self._output_transforms.append(transform)

    def isolate_documents(self) -> None:
        """Attend only inside the current document (the layout comes from `ForwardContext.documents`)."""
        self._core = _document_core

    # ---- forward --------------------------------------------------------------------------------
    def forward(self, x: Tensor, ctx: ForwardContext) -> Tensor:
        bsz, seq_len, dim = x.shape
        q = self.c_q(x).view(bsz, seq_len, self.num_heads, self.head_dim)
        k = self.c_k(x).view(bsz, seq_len, self.num_kv_heads, self.head_dim)
        v = self.c_v(x).view(bsz, seq_len, self.num_kv_heads, self.head_dim)
        for mix in self._value_mixers:
            v = mix(v, ctx)
        q, k = rms_norm(q), rms_norm(k)
        cos, sin = self.rotary(seq_len, x.device, q.dtype)
        q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, None, :, None]
        y = self._core(q, k, v, ctx)
        for transform in self._output_transforms:
            y = transform(y, v, x)
        return self.proj(y.reshape(bsz, seq_len, dim))
