"""EMA and SWA against their closed forms."""

from __future__ import annotations

import torch
from torch import nn

from pgolf.optim.averaging import EMA, SWA, Averagers
from testkit import present


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_ema_closed_form_and_start_step() -> None:
    model = nn.Linear(3, 2)
    _set(model, 0.0)
    ema = EMA(model, decay=0.5, start_step=2)
    for step, value in enumerate([4.0, 8.0, 16.0, 32.0], start=1):
        _set(model, value)
        ema.update(model, step)
    # steps 1-2 copy (8), then 0.5·8 + 0.5·16 = 12, then 0.5·12 + 0.5·32 = 22
    assert all(torch.all(v == 22.0) for v in ema.weights().values())


def test_swa_averages_only_low_lr_snapshots_on_its_cadence() -> None:
    model = nn.Linear(3, 2)
    swa = SWA(model, every=2, max_lr_scale=0.5)
    for step, (value, lr_scale) in enumerate([(1.0, 1.0), (2.0, 0.9), (3.0, 0.4), (4.0, 0.3), (5.0, 0.2), (6.0, 0.1)],
                                             start=1):
        _set(model, value)
        swa.update(model.state_dict(), step, lr_scale)
    assert swa.count == 2  # steps 4 and 6: step 2 is outside the low-LR window, odd steps off-cadence
    assert all(torch.all(v == 5.0) for v in present(swa.weights()).values())


def test_averagers_state_roundtrip_and_empty_swa() -> None:
    model = nn.Linear(3, 2)
    averagers = Averagers.for_model(model, ema_decay=0.9, ema_start_step=0, swa_every=1, swa_max_lr_scale=0.1)
    _set(model, 1.0)
    averagers.update(model, 1, lr_scale=1.0)
    assert set(averagers.averages()) == {"ema"}  # the SWA window never opened
    twin = Averagers.for_model(model, 0.9, 0, 1, 0.1)
    twin.load_state_dict(averagers.state_dict())
    for k, v in averagers.averages()["ema"].items():
        assert torch.equal(twin.averages()["ema"][k], v)
    assert not Averagers.for_model(model, 0.0, 0, 0, 0.5).enabled


def test_swa_of_ema_sums_the_ema_weights_as_pr635() -> None:
    model = nn.Linear(3, 2)
    _set(model, 0.0)
    averagers = Averagers.for_model(model, ema_decay=0.5, ema_start_step=0, swa_every=1, swa_max_lr_scale=1.0,
                                    swa_source="ema")
    ema_seen = []
    for step, value in enumerate((2.0, 4.0, 8.0), start=1):
        _set(model, value)
        averagers.update(model, step, lr_scale=0.5)
        ema_seen.append(next(iter(present(averagers.ema).weights().values())).flatten()[0].item())
    # EMA from 0: 1, then 2.5, then 5.25 (mean 2.92); the raw weights' mean is 4.67
    swa = averagers.averages()["swa"]
    assert all(torch.allclose(v, torch.full_like(v, sum(ema_seen) / 3)) for v in swa.values())
    assert sum(ema_seen) / 3 != (2.0 + 4.0 + 8.0) / 3  # the raw weights' mean would differ
