"""Invariants every registered technique must keep, built on a small model (TECHNIQUES catalog).

* forward/backward run, the loss is finite and every parameter gets a gradient and an optimizer;
* causality: perturbing a future token leaves every earlier output unchanged;
* document isolation: in a packed stream nothing crosses a BOS boundary (the #1797 leak) — checked
  with document-isolated attention on, since the baseline's attention crosses documents by design.
"""

from __future__ import annotations

import pytest
import torch
from modelkit import active_model, random_ids, small_config

from pgolf.model.techniques import TECHNIQUES, TECHNIQUES_BY_NAME, combined_overrides

CASES = [pytest.param(t.name, id=t.name) for t in TECHNIQUES] + [pytest.param("all", id="all")]


def technique_config(name: str, **extra: object):
    base = small_config()
    settings = combined_overrides(base) if name == "all" else TECHNIQUES_BY_NAME[name].overrides(base)
    return small_config(**settings, **extra)


@pytest.mark.parametrize("name", CASES)
def test_forward_backward_and_every_parameter_is_optimised(name: str) -> None:
    cfg = technique_config(name)
    model = active_model(cfg).train()
    ids = random_ids(2, 32)
    loss = model(ids, torch.roll(ids, -1, dims=1))
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing}"
    groups = model.optimizer_groups()
    grouped = [id(p) for g in (groups.token, groups.head, groups.matrix, groups.scalar) for p in g]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters()), \
        "optimizer partition must cover each parameter once"


@pytest.mark.parametrize("name", CASES)
def test_future_tokens_never_change_earlier_outputs(name: str) -> None:
    model = active_model(technique_config(name))
    ids = random_ids(2, 40)
    changed = ids.clone()
    changed[:, 25:] = random_ids(2, 15, seed=1)
    with torch.no_grad():
        before, after = model.hidden(ids), model.hidden(changed)
    assert torch.allclose(before[:, :25], after[:, :25], atol=1e-6)
    assert not torch.allclose(before[:, 25:], after[:, 25:], atol=1e-3)


@pytest.mark.parametrize("name", CASES)
def test_nothing_crosses_a_bos_document_boundary(name: str) -> None:
    cfg = technique_config(name, doc_isolated_attention=True)
    model = active_model(cfg)
    ids = random_ids(2, 40)
    ids[:, 17] = cfg.bos_id  # document A = 0..16, document B starts at its BOS, position 17
    changed = ids.clone()
    changed[:, 3:17] = random_ids(2, 14, seed=2)  # rewrite document A, including its last token
    with torch.no_grad():
        before, after = model.hidden(ids), model.hidden(changed)
    assert torch.allclose(before[:, 17:], after[:, 17:], atol=1e-6), "document A leaked into document B"
    assert not torch.allclose(before[:, 3:17], after[:, 3:17], atol=1e-3)


def test_shared_attention_crosses_documents_without_isolation() -> None:
    """The control for the test above: it can fail."""
    model = active_model(small_config())
    ids = random_ids(1, 40)
    ids[:, 17] = 1
    changed = ids.clone()
    changed[:, 3:17] = random_ids(1, 14, seed=2)
    with torch.no_grad():
        assert not torch.allclose(model.hidden(ids)[:, 17:], model.hidden(changed)[:, 17:], atol=1e-4)
