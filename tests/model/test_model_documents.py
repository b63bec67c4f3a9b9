"""Document-isolated attention: the FlexAttention block mask gives the dense-mask path's outputs and losses."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pgolf.config import ModelConfig
from pgolf.model.blocks import Block
from pgolf.model.documents import (
    DenseDocuments,
    FlexDocuments,
    build_document_attention,
    document_block_mask,
    document_causal_mask,
    document_cu_seqlens,
    document_ids,
    resolve_doc_kernel,
    varlen_capacity,
)
from pgolf.model.gpt import GPT


def _ids(batch: int, seq: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 50, (batch, seq), generator=g)
    ids[torch.rand(batch, seq, generator=g) < 0.06] = 1  # BOS
    ids[0, :40] = 7  # a document spanning whole blocks (full blocks), then starts at block edges
    ids[0, 48] = ids[0, 32] = 1
    return ids


@pytest.mark.parametrize("block", [8, 16, 64])
def test_block_mask_matches_the_dense_mask(block: int) -> None:
    ids = _ids(3, 64)
    dense = document_causal_mask(ids, bos_id=1)[:, 0]
    bm = document_block_mask(document_ids(ids, 1), block)
    expanded = bm.to_dense()[:, 0].repeat_interleave(block, 1).repeat_interleave(block, 2).bool()  # blocks visited
    assert not (dense & ~expanded).any()  # no allowed pair lies in a skipped block
    full = torch.zeros_like(expanded)
    kv, idx = bm.full_kv_num_blocks, bm.full_kv_indices
    assert kv is not None and idx is not None
    for b in range(3):
        for r in range(64 // block):
            for c in idx[b, 0, r, : kv[b, 0, r]].tolist():
                full[b, r * block:(r + 1) * block, c * block:(c + 1) * block] = True
    assert (dense[full]).all()  # "full" blocks need no mask
    assert full.any() == (block < 64)  # a single block is the diagonal: always masked


def test_flex_attention_equals_the_masked_path_with_gqa() -> None:
    torch.manual_seed(0)
    ids = _ids(2, 64)
    q, k, v = torch.randn(2, 64, 4, 16), torch.randn(2, 64, 2, 16), torch.randn(2, 64, 2, 16)
    dense = DenseDocuments(document_causal_mask(ids, 1))(q, k, v)
    flex = FlexDocuments(document_block_mask(document_ids(ids, 1), 16))(q, k, v)
    torch.testing.assert_close(flex, dense, atol=1e-5, rtol=1e-5)


def test_gpt_token_losses_are_the_same_with_flex_and_dense() -> None:
    cfg = ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2,
                      doc_isolated_attention=True)
    torch.manual_seed(0)
    dense_model = GPT(dataclasses.replace(cfg, doc_attention_kernel="dense"))
    flex_model = GPT(dataclasses.replace(cfg, doc_attention_kernel="flex"))
    flex_model._doc_kernels["cpu"] = "flex"  # CUDA's layout on CPU: FlexAttention runs forward-only here
    flex_model.load_state_dict(dense_model.state_dict())
    for block in flex_model.blocks:  # non-zero projections, so attention reaches the loss
        assert isinstance(block, Block)
        torch.nn.init.normal_(block.attn.proj.weight, std=0.2)
    dense_model.load_state_dict(flex_model.state_dict())
    ids = _ids(2, 128) % 64
    targets = torch.roll(ids, -1, 1)
    with torch.no_grad():
        expected = dense_model.token_losses(ids, targets)
        got = flex_model.token_losses(ids, targets)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert isinstance(build_document_attention(ids, 1, "flex"), FlexDocuments)


def test_cu_seqlens_hold_the_document_starts_then_the_total() -> None:
    starts = torch.tensor([[True, False, True, False], [True, False, False, True]])
    cu = document_cu_seqlens(starts, capacity=8)
    assert cu.tolist() == [0, 2, 4, 7, 8, 8, 8, 8]
    assert cu.dtype == torch.int32
    assert varlen_capacity(2, 2048) % 64 == 0 and varlen_capacity(2, 2048) > 2 + 2 * 2048 // 64


def test_kernel_resolution_names_the_fallback() -> None:
    assert resolve_doc_kernel("auto", "cpu") == ("dense", None)
    kernel, note = resolve_doc_kernel("varlen", "cpu")
    assert kernel == "dense" and note is not None and "varlen" in note and "using dense" in note
    kernel, note = resolve_doc_kernel("flex", "cpu")
    assert kernel == "dense" and note is not None and "no backward pass on CPU" in note
    model = GPT(ModelConfig(vocab_size=64, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2,
                            doc_isolated_attention=True, doc_attention_kernel="varlen"))
    notes = model.kernel_notes("cpu")
    assert len(notes) == 1 and notes[0].startswith("doc_attention:")
