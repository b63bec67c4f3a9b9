from __future__ import annotations

import torch

from pgolf.optim.muon import Muon, newton_schulz
from pgolf.optim.schedule import Schedule


def test_newton_schulz_pushes_singular_values_towards_one() -> None:
    torch.manual_seed(0)
    g = torch.randn(64, 32) @ torch.diag(torch.logspace(-0.6, 0.6, 32))
    s = torch.linalg.svdvals(newton_schulz(g, steps=5, dtype=torch.float32))
    assert s.min() > 0.6 and s.max() < 1.25  # quintic NS5 lands in this band, not exactly at 1
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 20


def test_muon_step_matches_the_update_rule() -> None:
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(16, 8))
    start = p.detach().clone()
    opt = Muon([p], lr=0.1, momentum=0.9, backend_steps=5, ns_dtype=torch.float32)
    grads = [torch.randn(16, 8) for _ in range(2)]
    buf = torch.zeros(16, 8)
    expected = start.clone()
    for g in grads:
        p.grad = g.clone()
        opt.step()
        buf = 0.9 * buf + g
        update = newton_schulz(g + 0.9 * buf, 5, torch.float32) * (16 / 8) ** 0.5
        expected -= 0.1 * update
    assert torch.allclose(p.detach(), expected, atol=1e-6)


def test_schedule_warmdown_and_momentum() -> None:
    s = Schedule(iterations=100, warmdown_iters=20, max_wallclock_ms=None, momentum_start=0.85, momentum_end=0.95,
                 momentum_warmup_steps=10)
    assert s.lr_multiplier(50, 0) == 1.0 and s.lr_multiplier(79, 0) == 1.0 and s.lr_multiplier(90, 0) == 0.5
    assert s.muon_momentum(0) == 0.85 and abs(s.muon_momentum(5) - 0.90) < 1e-12 and s.muon_momentum(50) == 0.95
    timed = Schedule(100, 20, max_wallclock_ms=1000.0, momentum_start=0.85, momentum_end=0.95, momentum_warmup_steps=0)
    # 10 ms/step → warmdown spans 200 ms: full LR until 800 ms, then linear to 0 at the cap
    assert timed.lr_multiplier(50, 500.0) == 1.0
    assert abs(timed.lr_multiplier(90, 900.0) - 0.5) < 1e-12
    assert timed.lr_multiplier(100, 1000.0) == 0.0
