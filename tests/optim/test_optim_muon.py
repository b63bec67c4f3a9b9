from __future__ import annotations

import pytest
import torch

from pgolf.optim.muon import aspect_scale, momentum_direction, newton_schulz
from pgolf.optim.round_robin import Muon


def _spread(x: torch.Tensor) -> tuple[float, float]:
    s = torch.linalg.svdvals(x)
    return float(s.min()), float(s.max())


def test_newton_schulz_pushes_singular_values_towards_one() -> None:
    torch.manual_seed(0)
    g = torch.randn(64, 32) @ torch.diag(torch.logspace(-0.6, 0.6, 32))
    low, high = _spread(newton_schulz(g, steps=5, dtype=torch.float32))
    assert low > 0.6 and high < 1.25  # quintic NS5 lands in this band, not exactly at 1
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 20


def test_polar_express_is_tighter_than_classic() -> None:
    torch.manual_seed(0)
    g = torch.randn(128, 512)
    classic = _spread(newton_schulz(g, 5, torch.float32, "classic"))
    polar = _spread(newton_schulz(g, 5, torch.float32, "polar_express"))
    assert polar[0] > 0.85 and polar[1] < 1.15
    assert polar[0] - classic[0] > 0.1  # classic leaves the small singular values near 0.68
    with pytest.raises(ValueError, match="polar_express defines 5 iterations"):
        newton_schulz(g, 6, torch.float32, "polar_express")


def test_batched_newton_schulz_equals_per_matrix() -> None:
    torch.manual_seed(2)
    for shape in ((3, 32, 48), (2, 48, 32)):
        stack = torch.randn(*shape)
        for variant in ("classic", "polar_express"):
            each = torch.stack([newton_schulz(m, 5, torch.float32, variant) for m in stack])
            torch.testing.assert_close(newton_schulz(stack, 5, torch.float32, variant), each)


def test_row_normalize_gives_unit_rows() -> None:
    g = torch.randn(8, 16)
    g[3] *= 1000.0
    direction = momentum_direction(g, torch.zeros_like(g), momentum=0.9, nesterov=True, row_normalize=True)
    torch.testing.assert_close(direction.norm(dim=1), torch.ones(8))


@pytest.mark.parametrize(("nesterov", "row_normalize", "weight_decay", "variant"),
                         [(True, False, 0.0, "classic"), (False, True, 0.3, "polar_express")])
def test_muon_step_matches_the_update_rule(nesterov: bool, row_normalize: bool, weight_decay: float,
                                           variant: str) -> None:
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(16, 8))
    start = p.detach().clone()
    opt = Muon([p], lr=0.1, momentum=0.9, backend_steps=5, ns_dtype=torch.float32, nesterov=nesterov,
               row_normalize=row_normalize, weight_decay=weight_decay, ns_variant=variant)
    grads = [torch.randn(16, 8) for _ in range(3)]
    buf = torch.zeros(16, 8)
    expected = start.clone()
    for g in grads:
        p.grad = g.clone()
        opt.step()
        buf = 0.9 * buf + g
        direction = g + 0.9 * buf if nesterov else buf.clone()
        if row_normalize:
            direction = direction / direction.norm(dim=1, keepdim=True)
        update = newton_schulz(direction, 5, torch.float32, variant) * (16 / 8) ** 0.5
        expected = expected * (1 - 0.1 * weight_decay) - 0.1 * update
    torch.testing.assert_close(p.detach(), expected, atol=1e-6, rtol=1e-5)
    assert aspect_scale(16, 8) == 2**0.5 and aspect_scale(8, 16) == 1.0
