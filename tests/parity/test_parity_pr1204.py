"""Parity of pgolf's `parallel_residual = "pr1204"` lanes with PR #1204's `GPT._parallel_block`
(shared/records/pr1204): sequential lane writes, ρ per sublayer (init √1.1), π per sublayer and lane,
both sublayers reading through `resid_mix`, the MLP reading its lane after attention wrote to it.

Only the block is compared (the record runs it per virtual layer with per-virtual-layer scalars; pgolf
has no `pr1204` preset), on a narrow model so that the test takes a second."""

from __future__ import annotations

import torch
from recordkit import assert_close, fp32, import_record

from pgolf.config import load_config
from pgolf.model.context import ForwardContext
from pgolf.model.gpt import build_block
from pgolf.model.lanes import SequentialParallelBlock

DIM, HEADS, KV_HEADS, LAYERS, PARALLEL_START = 128, 4, 2, 11, 7


def record_model(rec):
    return fp32(rec.GPT(vocab_size=1024, num_layers=LAYERS, model_dim=DIM, num_heads=HEADS, num_kv_heads=KV_HEADS,
                        mlp_mult=3.0, tie_embeddings=True, tied_embed_init_std=0.005, logit_softcap=30.0,
                        rope_base=10000.0, qk_gain_init=1.5, xsa_last_n=LAYERS, rope_dims=16, ln_scale=True,
                        parallel_residual=True, parallel_start_layer=PARALLEL_START, recur_layers=[4, 5],
                        recurrence_active=True))


def pgolf_block(virtual: int):
    overrides = {"model.num_layers": LAYERS, "model.model_dim": DIM, "model.num_heads": HEADS,
                 "model.num_kv_heads": KV_HEADS, "model.mlp_mult": 3.0, "model.activation": "leaky_relu2",
                 "model.rope_dims": 16, "model.rope_train_seq_len": 1024, "model.ln_scale": True,
                 "model.xsa_last_n": -1, "model.parallel_residual": "pr1204", "model.parallel_start": PARALLEL_START}
    cfg = load_config("baseline", env={}, overrides=[f"{k}={v}" for k, v in overrides.items()]).model
    return fp32(build_block(cfg, virtual))  # ln scale 1/√(i+1) of the record's virtual index i


def test_sequential_lanes_match_the_records_parallel_block() -> None:
    rec = import_record("pr1204")
    torch.manual_seed(1204)
    record = record_model(rec)
    with torch.no_grad():
        for p in record.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    virtual = 10  # physical 8 (the order is 0..5, 4, 5, 6..10): a parallel layer
    physical = record.v2p[virtual]
    assert physical >= PARALLEL_START and record._parallel_active_for_layer(virtual)
    ours = pgolf_block(virtual)
    assert isinstance(ours, SequentialParallelBlock)
    rb, n = record.blocks[virtual], LAYERS
    with torch.no_grad():
        for name, value in {
            "attn.c_q.weight": record.qo_bank[physical], "attn.proj.weight": record.qo_bank[n + physical],
            "attn.c_k.weight": record.kv_bank[physical], "attn.c_v.weight": record.kv_bank[n + physical],
            "mlp.fc.weight": record.mlp_up_bank[physical], "mlp.proj.weight": record.mlp_down_bank[physical],
            "attn.q_gain": rb.attn.q_gain, "attn_scale": rb.attn_scale, "mlp_scale": rb.mlp_scale,
            "resid_mix": rb.resid_mix, "parallel_resid": record.parallel_resid_lambdas[physical],
            "parallel_post": record.parallel_post_lambdas[physical],
        }.items():
            ours.get_parameter(name).copy_(value)
    gen = torch.Generator().manual_seed(0)
    lane0, lane1, x0 = (torch.randn(2, 64, DIM, generator=gen) for _ in range(3))
    weights = record._get_block_weights(virtual)[:6]
    with torch.no_grad():
        expected = record._parallel_block(virtual, lane0, lane1, x0, *weights)
        got = ours((lane0, lane1), ForwardContext(x0=x0))
    assert_close(got[0], expected[0], "attention lane")
    assert_close(got[1], expected[1], "MLP lane")
