from __future__ import annotations

import torch

from pgolf.config import ModelConfig, load_config
from pgolf.model.gpt import build_model, count_parameters, flops_per_token


def baseline_param_formula(m: ModelConfig) -> int:
    d, hd = m.model_dim, m.model_dim // m.num_heads
    kv = m.num_kv_heads * hd
    hidden = int(m.mlp_mult * d)
    matrices = d * d + 2 * d * kv + d * d + 2 * d * hidden
    controls = 2 * d + 2 * d + m.num_heads  # attn_scale, mlp_scale, resid_mix (2×d), q_gain
    skips = min(m.num_layers // 2, m.num_layers - m.num_layers // 2) * d
    head = 0 if m.tie_embeddings else m.vocab_size * d
    return m.num_layers * (matrices + controls) + m.vocab_size * d + skips + head


def test_baseline_parameter_count_is_official() -> None:
    cfg = load_config("baseline", env={})
    model = build_model(cfg.model, torch.device("cpu"))
    assert count_parameters(model) == 17_059_912 == baseline_param_formula(cfg.model)


def test_parameter_count_formula_other_shapes() -> None:
    cfg = load_config("tiny", env={}, overrides=["model.tie_embeddings=false", "model.num_layers=5"])
    model = build_model(cfg.model, torch.device("cpu"))
    assert count_parameters(model) == baseline_param_formula(cfg.model)


def test_official_state_dict_names_and_zero_init() -> None:
    cfg = load_config("baseline", env={}, overrides=["model.num_layers=2"])
    state = build_model(cfg.model, torch.device("cpu")).state_dict()
    expected = {"tok_emb.weight", "skip_weights"}
    for i in range(2):
        expected |= {f"blocks.{i}.{n}" for n in (
            "attn_scale", "mlp_scale", "resid_mix", "attn.q_gain", "attn.c_q.weight", "attn.c_k.weight",
            "attn.c_v.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight")}
    assert set(state) == expected
    assert torch.count_nonzero(state["blocks.0.attn.proj.weight"]) == 0
    assert torch.count_nonzero(state["blocks.1.mlp.proj.weight"]) == 0
    assert torch.allclose(state["blocks.0.attn.q_gain"], torch.full((8,), 1.5))


def test_blocks_are_identity_at_init_and_loss_is_uniformish() -> None:
    cfg = load_config("tiny", env={}, overrides=["model.num_layers=3"])
    model = build_model(cfg.model, torch.device("cpu"))
    x = torch.randint(0, cfg.model.vocab_size, (2, 16))
    emb = torch.nn.functional.rms_norm(model.tok_emb(x), (cfg.model.model_dim,))
    hidden = model.hidden(x)
    # zero-initialised output projections: every block is the identity, skips add encoder outputs (= emb)
    num_skips = model.skip_weights.shape[0]
    expected = torch.nn.functional.rms_norm(emb * (1 + num_skips), (cfg.model.model_dim,))
    assert torch.allclose(hidden, expected, atol=1e-5)
    loss = model(x, torch.randint(0, cfg.model.vocab_size, (2, 16)))
    assert abs(loss.item() - torch.log(torch.tensor(1024.0)).item()) < 0.05


def test_token_losses_match_mean_loss_and_are_causal() -> None:
    cfg = load_config("tiny", env={}, overrides=["model.num_layers=2"])
    torch.manual_seed(0)
    model = build_model(cfg.model, torch.device("cpu"))
    for p in model.parameters():  # leave the identity init so that attention actually mixes positions
        p.data.add_(0.02 * torch.randn_like(p))
    x = torch.randint(0, 1024, (2, 32))
    y = torch.randint(0, 1024, (2, 32))
    per_token = model.token_losses(x, y)
    assert per_token.shape == (2, 32)
    assert torch.allclose(per_token.mean(), model(x, y), atol=1e-6)
    x2 = x.clone()
    x2[:, 20:] = torch.randint(0, 1024, (2, 12))
    changed = model.token_losses(x2, y)
    assert torch.allclose(per_token[:, :20], changed[:, :20], atol=1e-6)
    assert not torch.allclose(per_token[:, 20:], changed[:, 20:])


def test_flops_per_token_counts_matmuls_and_attention() -> None:
    m = load_config("baseline", env={}).model
    matmul = 9 * (512 * 512 * 2 + 512 * 256 * 2 + 2 * 512 * 1024) + 1024 * 512
    assert flops_per_token(m, 1024) == 6 * matmul + 9 * 6 * 1024 * 512
