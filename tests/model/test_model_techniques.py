"""The defining property of each model technique, on the real modules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from modelkit import active_model, blocks, random_ids, small_config

from pgolf.model.attention import apply_partial_rotary, apply_rotary
from pgolf.model.bigram import BigramHash, bigram_buckets, trigram_buckets
from pgolf.model.blocks import Block
from pgolf.model.context import ForwardContext
from pgolf.model.documents import document_causal_mask
from pgolf.model.embeddings import SmearGateV1, SmearGateV2
from pgolf.model.gates import build_attention_gate
from pgolf.model.gpt import add_skip, build_model, count_parameters
from pgolf.model.lanes import ProteusParallelBlock, RecordParallelBlock
from pgolf.model.layers import CastedLinear
from pgolf.model.mlp import get_activation
from pgolf.model.values import ValueEmbedding, ValueResidualMix
from testkit import present

CPU = torch.device("cpu")


def capture_inputs(module: torch.nn.Module, store: list) -> torch.utils.hooks.RemovableHandle:
    return module.register_forward_pre_hook(lambda mod, args: store.append(args[0].detach().clone()))


def capture_outputs(module: torch.nn.Module, store: list) -> torch.utils.hooks.RemovableHandle:
    return module.register_forward_hook(lambda mod, args, out: store.append(out.detach().clone()))


# ---- MLP ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("slope", [0.5, 0.9])
def test_leaky_relu2_squares_a_leaky_relu(slope: float) -> None:
    h = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    expected = torch.where(h > 0, h * h, (slope * h) ** 2)
    assert torch.allclose(get_activation("leaky_relu2", slope)(h), expected)
    assert torch.equal(get_activation("relu2")(h), torch.relu(h) ** 2)


@pytest.mark.parametrize("mult", [2.0, 3.0, 3.5, 4.0])
def test_mlp_multiplier_is_a_float(mult: float) -> None:
    model = build_model(small_config(mlp_mult=mult), CPU)
    assert blocks(model)[0].mlp.fc.weight.shape == (int(mult * 64), 64)


# ---- attention ------------------------------------------------------------------------------------
def test_partial_rope_rotates_only_the_first_dims() -> None:
    x = torch.randn(2, 10, 4, 16)
    model = build_model(small_config(rope_dims=4), CPU)
    rotary = blocks(model)[0].attn.rotary
    assert torch.allclose(rotary.get_buffer("inv_freq"), 10000.0 ** (-torch.arange(0, 4, 2).float() / 4))
    cos, sin = rotary(10, CPU, torch.float32)
    out = apply_partial_rotary(x, cos, sin, dims=4)
    assert torch.equal(out[..., 4:], x[..., 4:])
    assert torch.allclose(out[..., :4], apply_rotary(x[..., :4], cos, sin))
    assert not torch.allclose(out[:, 1:, :, :4], x[:, 1:, :, :4])


def test_ln_scale_scales_sublayer_inputs_by_layer_depth() -> None:
    model = active_model(small_config(ln_scale=True))
    attn_in: list = []
    mlp_in: list = []
    for block in blocks(model):
        capture_inputs(block.attn.c_q, attn_in)
        capture_inputs(block.mlp.fc, mlp_in)
    with torch.no_grad():
        model.hidden(random_ids(1, 16))
    for layer in range(4):
        for captured in (attn_in, mlp_in):
            rms = captured[layer].pow(2).mean(-1).sqrt()
            assert torch.allclose(rms, torch.full_like(rms, 1 / math.sqrt(layer + 1)), atol=1e-4)


def test_qk_gain_starts_at_its_init() -> None:
    model = build_model(small_config(qk_gain_init=5.25), CPU)
    assert all(torch.equal(b.attn.q_gain, torch.full((4,), 5.25)) for b in blocks(model))


def test_logit_softcap_bounds_logits() -> None:
    model = build_model(small_config(logit_softcap=2.0), CPU)
    hidden = 50 * torch.randn(1, 8, 64)
    logits = model.logits(hidden)
    assert logits.abs().max() <= 2.0
    raw = F.linear(hidden, model.tok_emb.weight)
    assert torch.allclose(logits, 2.0 * torch.tanh(raw / 2.0))


@pytest.mark.parametrize("last_n", [2, -1])
def test_xsa_output_is_orthogonal_to_the_tokens_own_value(last_n: int) -> None:
    model = active_model(small_config(xsa_last_n=last_n))
    values: list = []
    outputs: list = []
    for block in blocks(model):
        capture_outputs(block.attn.c_v, values)
        capture_inputs(block.attn.proj, outputs)
    with torch.no_grad():
        model.hidden(random_ids(2, 24))
    xsa_from = 0 if last_n < 0 else 4 - last_n
    for layer in range(4):
        v = F.normalize(values[layer].view(2, 24, 2, 1, 16), dim=-1)  # KV head g serves query heads 2g, 2g+1
        y = outputs[layer].view(2, 24, 2, 2, 16)
        along_own_value = (y * v).sum(-1).abs().max()
        if layer >= xsa_from:  # (position 0 attends only to itself: XSA leaves ~0 there)
            assert along_own_value < 1e-5 * y.norm(dim=-1).max()
        else:  # without XSA the output keeps a component along its own value
            assert along_own_value > 1e-2 * y.norm(dim=-1).max()


def test_document_mask_allows_only_earlier_tokens_of_the_same_document() -> None:
    ids = torch.tensor([[5, 6, 1, 7, 8, 1, 9]])
    mask = document_causal_mask(ids, bos_id=1)[0, 0]
    doc = [0, 0, 1, 1, 1, 2, 2]
    for i in range(7):
        for j in range(7):
            assert bool(mask[i, j]) == (j <= i and doc[i] == doc[j])


def test_gate_forms_at_init() -> None:
    x = torch.randn(2, 5, 64)
    y = torch.randn(2, 5, 4, 16)
    out_gate = build_attention_gate("out", 4, 64, window=12, scale=1.0)
    assert torch.equal(out_gate(y, None, x), y)  # AttnOutGate: 2σ(0) = 1, the identity
    sparse = build_attention_gate("sparse", 4, 64, window=12, scale=0.5)
    assert torch.equal(sparse(y, None, x), 0.5 * y)
    dense = build_attention_gate("dense", 4, 64, window=12, scale=1.0)
    assert dense.attn_gate_w.shape == (4, 64) and 0.4 < dense.gate(x).mean() < 0.6


def test_sparse_gate_reads_only_its_window() -> None:
    gate = build_attention_gate("sparse", 4, 64, window=12, scale=0.5)
    torch.nn.init.normal_(gate.attn_gate_w)
    x = torch.randn(2, 5, 64)
    changed = x.clone()
    changed[..., 12:] = torch.randn(2, 5, 52)
    assert torch.equal(gate.gate(x), gate.gate(changed))
    changed[..., 0] += 1.0
    assert not torch.equal(gate.gate(x), gate.gate(changed))
    assert torch.allclose(gate.gate(x), torch.sigmoid(0.5 * x[..., :12] @ gate.attn_gate_w.T))


# ---- input features -------------------------------------------------------------------------------
def test_smear_v2_at_gate_zero_is_the_identity_and_masks_bos() -> None:
    smear = SmearGateV2(window=12, bos_id=1)
    e = torch.randn(2, 9, 64)
    ids = random_ids(2, 9)
    ids[:, 4] = 1
    assert torch.equal(smear(e, ids), e)
    with torch.no_grad():
        smear.smear_lambda.fill_(0.7)
        smear.smear_w.normal_()
    out = smear(e, ids)
    gate = 0.7 * torch.sigmoid(e[..., :12] @ smear.smear_w.T)
    expected = e.clone()
    expected[:, 1:] += gate[:, 1:] * e[:, :-1]
    expected[:, 4] = e[:, 4]  # BOS: no smear from the previous document
    assert torch.allclose(out, expected, atol=1e-6)


def test_smear_v1_mixes_the_previous_position_except_at_bos() -> None:
    smear = SmearGateV1(dim=64, bos_id=1)
    with torch.no_grad():
        smear.smear_gate.normal_()
    x = torch.randn(1, 6, 64)
    ids = random_ids(1, 6)
    ids[0, 3] = 1
    g = torch.sigmoid(smear.smear_gate)
    prev = torch.cat((torch.zeros(1, 1, 64), x[:, :-1]), dim=1)
    expected = (1 - g) * x + g * prev
    expected[:, 3] = x[:, 3]
    assert torch.allclose(smear(x, ids), expected, atol=1e-6)


def test_bigram_and_trigram_hashes() -> None:
    ids = torch.tensor([[5, 7, 9, 1, 4, 6]])
    big = bigram_buckets(ids, 2048, bos_id=1)
    assert big[0, 0] == 2047 and big[0, 3] == 2047  # no predecessor: row start and BOS
    assert big[0, 2] == ((36313 * 9) ^ (27191 * 7)) % 2047
    assert big[0, 4] == ((36313 * 4) ^ (27191 * 1)) % 2047  # the BOS is this document's own token
    tri = trigram_buckets(ids, 2048, bos_id=1)
    assert tri[0, :2].tolist() == [2047, 2047] and tri[0, 3] == 2047 and tri[0, 4] == 2047
    assert tri[0, 2] == ((36313 * 9) ^ (27191 * 7) ^ (51497 * 5)) % 2047
    assert tri[0, 5] == ((36313 * 6) ^ (27191 * 4) ^ (51497 * 1)) % 2047


def test_bigram_table_starts_at_zero_and_learns() -> None:
    bigram = BigramHash(buckets=64, dim=16, model_dim=32, bos_id=1, trigram=True)
    e = torch.randn(2, 10, 32)
    ids = random_ids(2, 10, vocab=50)
    out = bigram(e, ids)
    assert torch.equal(out, e)
    out.square().sum().backward()
    assert present(bigram.table.grad).abs().sum() > 0  # a zero projection as well would freeze both forever


def test_value_embeddings_depend_only_on_the_token_and_reach_chosen_layers() -> None:
    ve = ValueEmbedding(vocab_size=50, dim=8, kv_dim=32)
    torch.nn.init.normal_(ve.proj.weight)
    ids = torch.tensor([[3, 9, 3, 4, 9]])
    out = ve(ids, torch.float32)
    assert torch.allclose(out[0, 0], out[0, 2], atol=1e-7) and torch.allclose(out[0, 1], out[0, 4], atol=1e-7)
    assert torch.allclose(out, 0.1 * ve.proj(ve.table[ids]))
    model = build_model(small_config(value_embed_layers="1,3", value_embed_dim=8), CPU)
    assert [hasattr(b.attn, "value_embed_mix") for b in model.blocks] == [False, True, False, True]


def test_value_residual_mixes_the_first_layers_values() -> None:
    mix = ValueResidualMix()
    first, v = torch.randn(1, 4, 2, 8), torch.randn(1, 4, 2, 8)
    ctx = ForwardContext(x0=torch.zeros(1), first_values=first)
    assert torch.allclose(mix(v, ctx), 0.5 * first + 0.5 * v)
    model = active_model(small_config(value_residual=True))
    with torch.no_grad():
        for block in blocks(model)[1:]:
            mix = block.attn.value_residual
            assert isinstance(mix, ValueResidualMix)
            mix.vr_lambda.copy_(torch.tensor([1.0, 0.0]))
    seen: list = []
    for block in blocks(model):  # with λ = (1, 0) every later layer attends over layer 0's values
        block.attn.add_output_transform("spy", lambda y, v, x: seen.append(v.detach()) or y)
    with torch.no_grad():
        model.hidden(random_ids(1, 8))
    assert all(torch.equal(seen[0], later) for later in seen[1:])


# ---- scaffolding ----------------------------------------------------------------------------------
def test_skip_gate_at_init_is_an_even_lerp() -> None:
    x, skip, w = torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.rand(8)
    assert torch.allclose(add_skip(x, skip, w, torch.zeros(8)), 0.5 * x + 0.5 * w * skip)
    assert torch.equal(add_skip(x, skip, w, None), x + w * skip)


def test_without_unet_the_blocks_run_in_sequence() -> None:
    model = active_model(small_config(unet_skips=False))
    assert model.skip_weights is None
    ids = random_ids(1, 8)
    with torch.no_grad():
        x = F.rms_norm(model.tok_emb(ids), (64,))
        ctx = ForwardContext(x0=x)
        state = x
        for block in model.blocks:
            state = block(state, ctx)
        assert torch.allclose(model.hidden(ids), F.rms_norm(state, (64,)), atol=1e-6)


def test_ortho_init_makes_large_matrices_orthogonal() -> None:
    model = build_model(small_config(ortho_init=True), CPU)
    checked = 0
    for module in model.modules():
        if not isinstance(module, CastedLinear):
            continue
        w = module.weight
        if module.zero_init:
            assert torch.count_nonzero(w) == 0
        elif min(w.shape) >= 64:
            gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
            assert torch.allclose(gram, torch.eye(gram.shape[0]), atol=1e-5)
            checked += 1
    assert checked == 4 * 2  # c_q and mlp.fc of each layer (c_k/c_v are 32×64)


def test_tied_and_untied_heads() -> None:
    tied = build_model(small_config(), CPU)
    assert tied.lm_head is None and "lm_head.weight" not in tied.state_dict()
    untied = build_model(small_config(tie_embeddings=False), CPU)
    assert torch.equal(untied.logits(torch.randn(1, 3, 64)), torch.zeros(1, 3, 1024))  # zero-init head


# ---- parallel residuals ---------------------------------------------------------------------------
@pytest.mark.parametrize("form, block_cls", [("record", RecordParallelBlock), ("proteus", ProteusParallelBlock)])
def test_parallel_blocks_read_both_branches_from_the_block_input(form: str, block_cls: type) -> None:
    model = active_model(small_config(parallel_residual=form, parallel_start=2))
    assert [type(b) for b in model.blocks] == [Block, Block, block_cls, block_cls]
    ids = random_ids(1, 12)

    def mlp_inputs() -> list:
        store: list = []
        handles = [capture_inputs(b.mlp.fc, store) for b in blocks(model)]
        with torch.no_grad():
            model.hidden(ids)
        for h in handles:
            h.remove()
        return store

    before = mlp_inputs()
    with torch.no_grad():  # change only what attention writes in the last (parallel) layer
        blocks(model)[3].attn.proj.weight.mul_(3.0)
    assert torch.allclose(before[3], mlp_inputs()[3], atol=1e-6)  # its MLP does not see it
    with torch.no_grad():  # control: in a serial layer the MLP reads the attention output
        blocks(model)[1].attn.proj.weight.mul_(3.0)
    assert not torch.allclose(before[1], mlp_inputs()[1], atol=1e-3)


def test_record_parallel_initial_lambdas_and_mean_merge() -> None:
    model = build_model(small_config(parallel_residual="record", parallel_start=2), CPU)
    block = blocks(model)[3]
    assert isinstance(block, RecordParallelBlock)
    assert torch.allclose(block.parallel_resid, torch.full((2,), 1.1))
    assert torch.equal(block.parallel_post, torch.ones(2, 2))
    a, b = torch.randn(1, 2, 64), torch.randn(1, 2, 64)
    assert torch.allclose(model._final_merge((a, b)), 0.5 * (a + b))


def test_proteus_parameters_and_lane_merge() -> None:
    plain = count_parameters(build_model(small_config(), CPU))
    model = build_model(small_config(parallel_residual="proteus", parallel_start=2), CPU)
    assert count_parameters(model) - plain == 2 * (2 * 64 + 4) + 1  # resid_mix_mlp + lane_route per block, lane_merge
    block = blocks(model)[2]
    assert isinstance(block, ProteusParallelBlock)
    assert torch.equal(block.lane_route, torch.ones(4))
    a, b = torch.randn(1, 2, 64), torch.randn(1, 2, 64)
    with torch.no_grad():
        model.lane_merge.lane_merge.fill_(2.0)
    mu = torch.sigmoid(torch.tensor(2.0))
    assert torch.allclose(model._final_merge((a, b)), mu * a + (1 - mu) * b)


# ---- depth recurrence -----------------------------------------------------------------------------
def test_recurrence_reuses_the_same_parameters() -> None:
    plain = build_model(small_config(), CPU)
    model = active_model(small_config(recur_start=1, recur_end=2, recur_loops=2))
    extra_skips = (model.skip_weights.shape[0] - plain.skip_weights.shape[0]) * 64  # U-Net over 8 virtual layers
    assert count_parameters(model) == count_parameters(plain) + extra_skips  # no block is copied
    assert model.layer_order == [0, 1, 2, 1, 2, 1, 2, 3]
    calls = [0] * 4
    for i, block in enumerate(model.blocks):
        block.register_forward_hook(lambda mod, args, out, i=i: calls.__setitem__(i, calls[i] + 1))
    ids = random_ids(1, 8)
    with torch.no_grad():
        looped = model.hidden(ids)
        assert calls == [1, 3, 3, 1]
        model.set_recurrence_active(False)
        assert model.layer_order == [0, 1, 2, 3]
        flat = model.hidden(ids)
    assert calls == [2, 4, 4, 2]
    assert not torch.allclose(looped, flat)
    assert model.skip_weights.shape[0] == 4  # min(4, 4) over the 8 virtual layers; 2 used when flat


def test_compiled_model_follows_the_recurrence_switch() -> None:
    model = active_model(small_config(recur_start=1, recur_end=1, recur_loops=1))
    ids = random_ids(1, 8)
    compiled = torch.compile(model.hidden, backend="eager", fullgraph=True)
    with torch.no_grad():
        expected_on = model.hidden(ids)
        assert torch.equal(compiled(ids), expected_on)
        model.set_recurrence_active(False)
        expected_off = model.hidden(ids)
        assert torch.equal(compiled(ids), expected_off)  # not constant-folded into the looped graph
        model.set_recurrence_active(True)
        assert torch.equal(compiled(ids), expected_on)
