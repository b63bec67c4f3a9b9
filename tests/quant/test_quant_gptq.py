"""Full-Hessian GPTQ: error compensation, degenerate Hessians, Hessian collection (TECHNIQUES §4.5)."""

from __future__ import annotations

import torch

from pgolf.config import ModelConfig
from pgolf.model.gpt import build_model
from pgolf.quant.gptq import collect_hessians, gptq_quantize, hessian_names
from pgolf.quant.intk import ClipRule, round_to_grid, row_scales
from pgolf.quant.mixed import TensorQuantizer
from pgolf.quant.policy import TensorFormat
from testkit import present


def correlated_inputs(n: int = 2048, cols: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) / cols**0.5 + torch.eye(cols)
    return (torch.randn(n, cols, generator=g) @ mix) * torch.linspace(0.2, 3.0, cols)


def output_error(x: torch.Tensor, w: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor) -> float:
    return float((x @ (w - codes.float() * scale.float()[:, None]).T).square().mean())


def test_gptq_cuts_the_output_error_of_round_to_nearest() -> None:
    x = correlated_inputs()
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    h = x.T @ x / x.shape[0]
    for bits in (4, 6):
        scale = row_scales(w, bits, ClipRule("search"))
        rtn = output_error(x, w, round_to_grid(w, scale, bits), scale)
        gptq = output_error(x, w, present(gptq_quantize(w, h, [scale], bits, block_size=16))[0], scale)
        assert gptq < 0.7 * rtn, (bits, gptq, rtn)


def test_uncorrelated_inputs_leave_nothing_to_compensate() -> None:
    w = torch.randn(16, 40, generator=torch.Generator().manual_seed(2))
    scale = row_scales(w, 5, ClipRule("max"))
    assert torch.equal(present(gptq_quantize(w, torch.eye(40) * 3.0, [scale], 5))[0], round_to_grid(w, scale, 5))


def test_dead_columns_are_zeroed_and_a_broken_hessian_falls_back_to_rtn() -> None:
    x = correlated_inputs(cols=24)
    x[:, 5] = 0.0
    w = torch.randn(8, 24, generator=torch.Generator().manual_seed(4))
    scale = row_scales(w, 6, ClipRule("max"))
    codes = present(gptq_quantize(w, x.T @ x / len(x), [scale], 6))[0]
    assert torch.all(codes[:, 5] == 0)
    assert gptq_quantize(w, torch.full((24, 24), float("nan")), [scale], 6) is None
    quantizer = TensorQuantizer({"w": torch.full((24, 24), float("nan"))})
    qt, method = quantizer.quantize("w", w, TensorFormat("int6", ClipRule("max")))
    assert method == "rtn (cholesky failed)" and torch.equal(qt.data, round_to_grid(w, scale, 6))


def test_hessians_come_from_the_inputs_each_weight_sees() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1,
                                    mlp_mult=2.0), torch.device("cpu"))
    for p in model.parameters():  # zero-initialised projections would make the MLP input trivial
        if p.ndim == 2:
            p.data.normal_(0, 0.2)
    ids = torch.randint(0, 64, (3, 16), generator=torch.Generator().manual_seed(1))
    names = hessian_names(model)
    assert "tok_emb.weight" in names and "blocks.1.mlp.proj.weight" in names
    hessians = collect_hessians(model, ids.split(1), names)
    assert set(hessians) == names
    with torch.no_grad():
        hidden = model.hidden(ids).reshape(-1, 32)
    assert torch.allclose(hessians["tok_emb.weight"], hidden.T @ hidden / hidden.shape[0], atol=1e-5)
    assert hessians["blocks.0.mlp.proj.weight"].shape == (64, 64)
    assert torch.all(hessians["blocks.0.mlp.proj.weight"] >= 0)  # relu² outputs are non-negative
    assert hessians["blocks.0.attn.c_k.weight"].shape == (32, 32)
    assert torch.allclose(hessians["blocks.0.attn.c_q.weight"], hessians["blocks.0.attn.c_v.weight"])


def test_clip_search_keeps_the_candidate_whose_gptq_codes_reconstruct_best() -> None:
    from pgolf.quant.intk import matrix_candidates, reconstruction_mse

    x = correlated_inputs(cols=48)
    w = torch.randn(24, 48, generator=torch.Generator().manual_seed(5))
    w[::4, 3] *= 30.0
    h = x.T @ x / len(x)
    candidates = matrix_candidates(w, 5)
    singles = [present(gptq_quantize(w, h, [s], 5, block_size=16))[0] for s in candidates]
    errors = [reconstruction_mse(w, c, s) for c, s in zip(singles, candidates, strict=True)]
    codes, scale = present(gptq_quantize(w, h, candidates, 5, block_size=16))
    best = errors.index(min(errors))
    assert torch.equal(scale, candidates[best]) and torch.equal(codes, singles[best])


def test_a_format_without_gptq_ignores_its_hessian() -> None:
    w = torch.randn(8, 24, generator=torch.Generator().manual_seed(6))
    fmt = TensorFormat("int8", ClipRule.parse("q:99.99984"), gptq=False)
    qt, method = TensorQuantizer({"w": torch.eye(24)}).quantize("w", w, fmt)
    assert method == "rtn" and str(fmt) == "int8/q:99.99984/rtn" and qt.bits == 8
