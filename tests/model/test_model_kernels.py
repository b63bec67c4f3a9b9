"""Fused kernels: the references equal the model's unfused math on CPU; the Triton ops equal the references on CUDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pgolf.model.kernels.dispatch import TRITON_AVAILABLE, resolve_fused, softcap_cross_entropy_reference
from pgolf.model.kernels.leaky_relu2 import leaky_relu2_fused, leaky_relu2_reference
from pgolf.model.kernels.softcap_ce import softcap_cross_entropy_fused
from pgolf.model.mlp import MLP

needs_triton = pytest.mark.skipif(not (TRITON_AVAILABLE and torch.cuda.is_available()), reason="needs Triton on CUDA")


def test_softcap_reference_is_the_records_loss() -> None:
    torch.manual_seed(0)
    raw = torch.randn(3, 5, 40) * 50
    targets = torch.randint(0, 40, (3, 5))
    capped = (30.0 * torch.tanh(raw / 30.0)).float()
    expected = F.cross_entropy(capped.reshape(-1, 40), targets.reshape(-1), reduction="none").view(3, 5)
    torch.testing.assert_close(softcap_cross_entropy_reference(raw, targets, 30.0), expected)
    assert torch.equal(softcap_cross_entropy_reference(raw, targets, 30.0, "mean"),
                       F.cross_entropy(capped.reshape(-1, 40), targets.reshape(-1)))
    assert torch.equal(softcap_cross_entropy_fused(raw, targets, 30.0),
                       softcap_cross_entropy_reference(raw, targets, 30.0))


def test_fused_mlp_on_cpu_runs_the_reference() -> None:
    torch.manual_seed(0)
    h = torch.randn(4, 7, requires_grad=True)
    assert torch.equal(leaky_relu2_fused(h, 0.5), leaky_relu2_reference(h, 0.5))
    plain, fused = MLP(8, 16, "leaky_relu2", 0.5), MLP(8, 16, "leaky_relu2", 0.5, fused=True)
    fused.load_state_dict(plain.state_dict())
    torch.nn.init.normal_(plain.proj.weight)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(fused(x), plain(x))


def test_fused_request_without_cuda_names_the_fallback() -> None:
    assert resolve_fused("off", "cuda") == (False, None)
    use, note = resolve_fused("on", "cpu")
    assert not use and note is not None and "using the PyTorch reference" in note
    assert resolve_fused("auto", "cpu") == (False, None)


@needs_triton
@pytest.mark.parametrize("vocab", [1024, 1000, 8192])
def test_triton_softcap_ce_matches_the_reference(vocab: int) -> None:
    torch.manual_seed(0)
    raw = (torch.randn(64, vocab, device="cuda") * 40).to(torch.bfloat16).requires_grad_()
    targets = torch.randint(0, vocab, (64,), device="cuda")
    ref_raw = raw.detach().float().requires_grad_()
    loss = softcap_cross_entropy_fused(raw, targets, 30.0)
    expected = softcap_cross_entropy_reference(ref_raw, targets, 30.0)
    torch.testing.assert_close(loss, expected, atol=1e-4, rtol=1e-4)
    loss.mean().backward()
    expected.mean().backward()
    assert raw.grad is not None
    torch.testing.assert_close(raw.grad.float(), ref_raw.grad, atol=2e-3, rtol=2e-2)


@needs_triton
@pytest.mark.parametrize("slope", [0.0, 0.5])
def test_triton_leaky_relu2_matches_the_reference(slope: float) -> None:
    torch.manual_seed(0)
    h = torch.randn(3000, 17, device="cuda", requires_grad=True)
    ref = h.detach().clone().requires_grad_()
    out, expected = leaky_relu2_fused(h, slope), leaky_relu2_reference(ref, slope)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(out)
    out.backward(g)
    expected.backward(g)
    torch.testing.assert_close(h.grad, ref.grad)
