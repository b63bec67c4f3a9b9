"""Parallel lanes and depth recurrence in their published forms (#1204, #1289, #1425, the SOTA):
skip routing into lanes, the lane merge, in-place recurrence with untied MLPs, sequential lane writes."""

from __future__ import annotations

from typing import Any

import torch
from modelkit import active_model, blocks, random_ids, small_config

from pgolf.model.gpt import count_parameters, plain_stages
from pgolf.model.lanes import ProteusParallelBlock, SequentialParallelBlock
from pgolf.model.mlp import MLP
from pgolf.model.recurrence import layer_stages


def test_inplace_recurrence_stages_follow_the_physical_unet() -> None:
    encoder, decoder = layer_stages(11, True, 4, 5, 1, "inplace")
    assert [[layer for layer, _ in s] for s in encoder] == [[0], [1], [2], [3], [4, 4]]
    assert [[layer for layer, _ in s] for s in decoder] == [[5, 5], [6], [7], [8], [9], [10]]
    assert decoder[0] == [(5, 0), (5, 1)]
    seg_encoder, seg_decoder = layer_stages(11, True, 3, 5, 2, "segment")
    assert len(seg_encoder) == 8 and len(seg_decoder) == 9  # the SOTA's 17 virtual layers, 8 skips


def test_recurrence_without_loops_gives_the_plain_stages() -> None:
    for unet in (True, False):
        assert plain_stages(11, unet) == layer_stages(11, unet) == layer_stages(11, unet, 4, 5, 0, "inplace")
    assert plain_stages(5, True) == ([[(0, 0)], [(1, 0)]], [[(2, 0)], [(3, 0)], [(4, 0)]])


def test_inplace_recurrence_order_skips_and_untied_mlps() -> None:
    plain = active_model(small_config())
    model = active_model(small_config(recur_start=1, recur_end=2, recur_loops=1, recur_form="inplace",
                                      recur_untie_mlp=True))
    assert model.layer_order == [0, 1, 1, 2, 2, 3]
    assert model.skip_weights.shape[0] == plain.skip_weights.shape[0] == 2  # skips stay per physical layer
    mlp = sum(p.numel() for p in blocks(model)[0].mlp.parameters())
    assert count_parameters(model) == count_parameters(plain) + 2 * mlp  # one untied MLP per repeated run
    assert sorted(model.recur_mlps) == ["1_1", "2_1"]
    calls: list[str] = []
    for name, module in [("blocks.1.mlp", blocks(model)[1].mlp), ("recur.1_1", model.recur_mlps["1_1"])]:
        module.register_forward_hook(lambda mod, args, out, name=name: calls.append(name))
    untied = model.recur_mlps["2_1"]
    assert isinstance(untied, MLP)
    with torch.no_grad():
        before = model.hidden(random_ids(1, 8))
        untied.proj.weight.mul_(2.0)
        after = model.hidden(random_ids(1, 8))
    assert calls == ["blocks.1.mlp", "recur.1_1", "blocks.1.mlp", "recur.1_1"]
    assert not torch.allclose(before, after)  # the second run of layer 2 uses its own MLP


def test_attention_lane_skip_leaves_the_mlp_lane_unskipped_at_the_first_parallel_layer() -> None:
    for lanes in ("attn", "both"):
        model = active_model(small_config(parallel_residual="record", parallel_start=2, skip_lanes=lanes))
        captured: dict[str, Any] = {}  # a block's input and output: one tensor or a (attention, MLP) pair
        blocks(model)[2].register_forward_pre_hook(lambda mod, args, c=captured: c.update(state=args[0]))
        blocks(model)[1].register_forward_hook(lambda mod, args, out, c=captured: c.update(out=out))
        with torch.no_grad():
            model.hidden(random_ids(1, 8))
        state, out = captured["state"], captured["out"]
        if lanes == "attn":
            assert isinstance(state, tuple) and torch.equal(state[1], out) and not torch.equal(state[0], out)
        else:  # one skipped tensor: the block splits it into two equal lanes
            assert isinstance(state, torch.Tensor) and not torch.equal(state, out)


def test_lane_merge_forms() -> None:
    a, b = torch.randn(1, 2, 64), torch.randn(1, 2, 64)
    linear = active_model(small_config(parallel_residual="proteus", parallel_start=2, lane_merge="linear"))
    sigmoid = active_model(small_config(parallel_residual="proteus", parallel_start=2))
    with torch.no_grad():
        linear.lane_merge.lane_merge.fill_(0.3)
        sigmoid.lane_merge.lane_merge.fill_(0.3)
    mu = torch.sigmoid(torch.tensor(0.3))
    assert torch.allclose(linear._final_merge((a, b)), 0.3 * a + 0.7 * b)
    assert torch.allclose(sigmoid._final_merge((a, b)), mu * a + (1 - mu) * b)
    fresh = active_model(small_config(parallel_residual="proteus", parallel_start=2), noise=0.0)
    assert fresh.lane_merge.lane_merge.item() == 0.5


def test_proteus_block_adds_to_the_raw_lanes() -> None:
    model = active_model(small_config(parallel_residual="proteus", parallel_start=2))
    block = blocks(model)[3]
    assert isinstance(block, ProteusParallelBlock)
    x_attn, x_mlp, x0 = torch.randn(3, 1, 4, 64).unbind(0)
    ctx = model._context(x0, random_ids(1, 4))
    with torch.no_grad():
        block.lane_route.copy_(torch.zeros(4))  # no sublayer output reaches a lane
        out_attn, out_mlp = block((x_attn, x_mlp), ctx)
    assert torch.equal(out_attn, x_attn) and torch.equal(out_mlp, x_mlp)  # not the resid_mix-ed reads


def test_sequential_lanes_of_pr1204() -> None:
    model = active_model(small_config(parallel_residual="pr1204", parallel_start=2), noise=0.0)
    block = blocks(model)[3]
    assert isinstance(block, SequentialParallelBlock)
    assert torch.allclose(block.parallel_resid, torch.full((2,), 1.1 ** 0.5))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    seen = {}
    block.mlp.register_forward_pre_hook(lambda mod, args: seen.update(mlp_in=args[0]))
    x0 = torch.randn(1, 4, 64)
    lane = torch.randn(1, 4, 64)
    ctx = model._context(x0, random_ids(1, 4))
    with torch.no_grad():
        block((lane, lane), ctx)
        rho, post = block.parallel_resid, block.parallel_post
        a = block.attn_scale * block.attn(block.norm(block.resid_mix[0] * lane + block.resid_mix[1] * x0), ctx)
        lane1 = rho[0] * lane + post[0, 1] * a  # what the MLP reads: its lane after attention's write
        expected = block.norm(block.resid_mix[0] * lane1 + block.resid_mix[1] * x0)
    assert torch.allclose(seen["mlp_in"], expected, atol=1e-6)


def test_lora_adapters_are_one_per_virtual_slot() -> None:
    """#1855: a block that recurrence runs three times gets three adapters per site, used in run order."""
    from pgolf.evaluate.lora import BatchedLoRA, LoRASet

    model = active_model(small_config(recur_start=1, recur_end=2, recur_loops=2))  # order 0,1,2,1,2,1,2,3
    lora = LoRASet(model, ["q", "mlp"], slots=1, rank=2, alpha=4.0, seed=0)
    assert len(lora.adapters) == 2 * len(model.layer_order)  # 8 virtual slots × 2 sites
    lora.rows = torch.tensor([0])
    x = random_ids(1, 8)
    third_run = lora.adapters["blocks_1_attn_c_q_run2"]  # the third run of block 1 only
    assert isinstance(third_run, BatchedLoRA)
    with torch.no_grad():
        for adapter in lora.adapters.values():
            assert isinstance(adapter, BatchedLoRA)
            adapter.B.normal_()
        before = model.hidden(x)
        third_run.B.zero_()
        after = model.hidden(x)
    lora.remove()
    assert not torch.allclose(before, after)
