"""Document-isolated causal attention: token i attends j iff j ≤ i and no BOS lies in (j, i].

Imported only by models with `model.doc_isolated_attention` (and `pgolf doctor`), so only their runs ship it.

Three layouts of the same rule, built once per forward from the input ids and shared by every layer:

- `dense`: a (batch, 1, seq, seq) boolean mask for SDPA. Exact everywhere, but a dense mask rules out
  the flash kernels: the CPU path and the reference the others are tested against.
- `flex`: a FlexAttention `BlockMask` built directly from per-block document ids (no dense mask, no
  host sync): blocks entirely inside one document are "full" (no mask evaluated), blocks that straddle
  a boundary or sit on the diagonal are "partial", all others are skipped.
- `varlen`: FlashAttention 3 `flash_attn_varlen_func` over the flattened batch, with the document
  starts as `cu_seqlens`. Their count varies per batch, so they are laid out in a fixed capacity
  (padding = zero-length documents) to keep shapes static; a batch with more documents than the
  capacity stops the run with a device-side assert instead of silently crossing a boundary.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from pgolf.errors import ConfigError
from pgolf.model.context import DocumentAttention

if TYPE_CHECKING:
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
else:
    try:  # resolved at import: the forward pass must not import anything (torch.compile traces it)
        from torch.nn.attention.flex_attention import BlockMask, flex_attention
    except ImportError:  # an older torch: resolve_doc_kernel never picks "flex" then
        BlockMask = flex_attention = None

DOC_KERNELS = ("auto", "dense", "flex", "varlen")  # config._CHOICES["model.doc_attention_kernel"] lists the same
FLEX_BLOCK = 128  # FlexAttention's default tile: the block mask must use a multiple of it on CUDA


def _load_varlen_kernel() -> Callable[..., Tensor] | None:
    """FlashAttention 3's varlen entry point, when importable."""
    try:
        module = importlib.import_module("flash_attn_interface")
    except Exception:  # noqa: BLE001 - a broken install must fall back, not crash
        return None
    return getattr(module, "flash_attn_varlen_func", None)


FLASH_VARLEN_FN = _load_varlen_kernel()
FLEX_AVAILABLE = flex_attention is not None


def resolve_doc_kernel(requested: str, device_type: str) -> tuple[str, str | None]:
    """(kernel, note): the layout used on `device_type`, and a one-line note when the requested one is
    unavailable and another is taken instead.

    auto: FA3 varlen on CUDA when installed, else FlexAttention on CUDA, else the dense mask (CPU).
    """
    cuda = device_type == "cuda"
    best = "varlen" if cuda and FLASH_VARLEN_FN is not None else "flex" if cuda and FLEX_AVAILABLE else "dense"
    if requested == "auto":
        return best, None
    if requested == "varlen" and (not cuda or FLASH_VARLEN_FN is None):
        why = "flash_attn_interface (FlashAttention 3) is not importable" if cuda else "it runs on CUDA only"
        return best, (f"doc_attention: model.doc_attention_kernel=varlen but {why}; using {best} "
                      "(install FlashAttention 3 or set model.doc_attention_kernel=auto)")
    if requested == "flex" and not (cuda and FLEX_AVAILABLE):
        why = "this torch has no FlexAttention" if cuda else "FlexAttention has no backward pass on CPU"
        return "dense", (f"doc_attention: model.doc_attention_kernel=flex but {why}; using the dense mask "
                         "(set model.doc_attention_kernel=auto)")
    return requested, None


def document_ids(input_ids: Tensor, bos_id: int) -> Tensor:
    """(batch, seq) int32: index of each token's document within its row (BOS opens a new one)."""
    return torch.cumsum((input_ids == bos_id).to(torch.int32), dim=1)


def document_causal_mask(input_ids: Tensor, bos_id: int) -> Tensor:
    """(batch, 1, seq, seq) bool: position i may attend j iff j ≤ i and no BOS lies in (j, i].

    A BOS token opens a document, so it belongs to the document it starts; a row that begins
    mid-document treats its first tokens as one more document.
    """
    doc = document_ids(input_ids, bos_id)
    same_doc = doc[:, :, None] == doc[:, None, :]
    seq = input_ids.size(1)
    causal = torch.ones(seq, seq, dtype=torch.bool, device=input_ids.device).tril()
    return (same_doc & causal)[:, None, :, :]


@dataclass
class DenseDocuments:
    mask: Tensor  # (batch, 1, seq, seq) bool

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=self.mask, enable_gqa=k.size(2) != q.size(2))
        return y.transpose(1, 2)


def _block_tables(flags: Tensor) -> tuple[Tensor, Tensor]:
    """(batch, nq, nk) bool → (counts (batch, 1, nq), indices (batch, 1, nq, nk)) with the set blocks first."""
    counts = flags.sum(-1, dtype=torch.int32)
    order = torch.argsort((~flags).to(torch.int8), dim=-1, stable=True).to(torch.int32)
    return counts[:, None], order[:, None]


def document_block_mask(doc: Tensor, block: int) -> BlockMask:
    """FlexAttention BlockMask of the document-causal rule from (batch, seq) document ids, seq % block == 0.

    Document ids never decrease along a row, so block pairs are classified from the ids at block edges:
    kv block c may matter to query block r iff c ≤ r and last_id(c) ≥ first_id(r); it needs no mask iff
    c < r and first_id(c) == last_id(r) (both blocks lie in one document).
    """
    batch, seq = doc.shape
    edges = doc.view(batch, seq // block, block)
    first, last = edges[..., 0], edges[..., -1]
    n = seq // block
    idx = torch.arange(n, device=doc.device)
    below = idx[None, :] < idx[:, None]  # (r, c): c < r
    on_or_below = idx[None, :] <= idx[:, None]
    touches = on_or_below & (last[:, None, :] >= first[:, :, None])
    full = below & (first[:, None, :] == last[:, :, None])
    partial = touches & ~full

    def mask_mod(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (kv_idx <= q_idx) & (doc[b, q_idx] == doc[b, kv_idx])

    counts, indices = _block_tables(partial)
    full_counts, full_indices = _block_tables(full)
    return BlockMask.from_kv_blocks(counts, indices, full_counts, full_indices, BLOCK_SIZE=block, mask_mod=mask_mod,
                                    seq_lengths=(seq, seq))


@dataclass
class FlexDocuments:
    block_mask: BlockMask

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        y = flex_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=self.block_mask,
                           enable_gqa=k.size(2) != q.size(2))
        return y.transpose(1, 2)  # type: ignore[union-attr]


def varlen_capacity(batch: int, seq: int) -> int:
    """Document slots per batch: every row start plus one document per 64 tokens, rounded up to 64 entries."""
    needed = batch + batch * seq // 64 + 1
    return -(-needed // 64) * 64


def document_cu_seqlens(doc_starts: Tensor, capacity: int) -> Tensor:
    """int32 cumulative lengths over the flattened batch from a (batch, seq) bool "a document starts here".

    Fixed length `capacity`: the trailing entries repeat the total length (zero-length documents).
    """
    total = doc_starts.numel()
    flat = doc_starts.reshape(-1)
    count = flat.sum()
    # an on-device check: a host-side assert would synchronise the forward pass
    torch._assert_async(  # pyright: ignore[reportPrivateImportUsage] - no public async assert
        count < capacity, "more documents in the batch than the varlen capacity")
    starts = torch.nonzero_static(flat, size=capacity, fill_value=total).reshape(-1)
    return starts.to(torch.int32)


@dataclass
class VarlenDocuments:
    cu_seqlens: Tensor  # (capacity,) int32
    max_seqlen: int

    def __call__(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if q.dtype not in (torch.bfloat16, torch.float16):
            raise ConfigError("model.doc_attention_kernel=varlen: FlashAttention 3 needs 16-bit inputs, got "
                              f"{q.dtype}; set train.dtype=bf16 or model.doc_attention_kernel=flex")
        batch, seq = q.shape[:2]
        out = FLASH_VARLEN_FN(q.reshape(batch * seq, *q.shape[2:]), k.reshape(batch * seq, *k.shape[2:]),  # type: ignore[misc]
                              v.reshape(batch * seq, *v.shape[2:]), cu_seqlens_q=self.cu_seqlens,
                              cu_seqlens_k=self.cu_seqlens, max_seqlen_q=self.max_seqlen,
                              max_seqlen_k=self.max_seqlen, causal=True)
        out = out[0] if isinstance(out, tuple) else out
        return out.view(batch, seq, *q.shape[2:])


def build_document_attention(input_ids: Tensor, bos_id: int, kernel: str) -> DocumentAttention:
    """The layout `kernel` ("dense" | "flex" | "varlen", already resolved for the device) needs for this batch."""
    if kernel == "dense":
        return DenseDocuments(document_causal_mask(input_ids, bos_id))
    if kernel == "flex":
        seq = input_ids.size(1)
        block = FLEX_BLOCK if seq % FLEX_BLOCK == 0 else seq
        return FlexDocuments(document_block_mask(document_ids(input_ids, bos_id), block))
    if kernel == "varlen":
        batch, seq = input_ids.shape
        starts = input_ids == bos_id
        starts[:, 0] = True  # every row opens a document (rows never attend across each other)
        return VarlenDocuments(document_cu_seqlens(starts, varlen_capacity(batch, seq)), seq)
    raise ValueError(f"unknown document attention kernel {kernel!r}: choose one of {', '.join(DOC_KERNELS[1:])}")
