"""PR #1218 (shared/records/base_1218), the base of PR #1291: its script is #1291's without SLOT (#1291 only adds the
SLOT eval and splits `forward_logits` into `forward_hidden` + `compute_logits`), so preset `pr1291` with
`eval.slot = "off"` is the #1218 record and test_parity_pr1291.py covers it. This file checks that premise at a
small shape: equal settings but SLOT's, the same model (logits from the same weights) and the same optimizers."""

from __future__ import annotations

import pytest
import torch
from recordkit import assert_close, cheap_init, fp32, import_record, perturbed, val_batch

SMALL = {"VOCAB_SIZE": "64", "MODEL_DIM": "32", "EMBEDDING_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1",
         "VE_DIM": "8", "TORCH_COMPILE_DISABLE": "1"}
SLOT = {"slot_enabled", "slot_lr", "slot_steps"}


@pytest.fixture(scope="module")
def scripts():
    return import_record("base_1218", SMALL), import_record("pr1291", SMALL)


def settings(rec) -> dict[str, object]:
    h = rec.Hyperparameters()
    names = {n for n in dir(h) if not n.startswith("_")} - {"run_id", "logfile"}
    return {n: getattr(h, n) for n in names if not callable(getattr(h, n))}


def test_settings_are_pr1291s_without_slot(scripts) -> None:
    base, slot = settings(scripts[0]), settings(scripts[1])
    assert set(slot) - set(base) == SLOT and set(base) <= set(slot)
    assert {n: v for n, v in slot.items() if n not in SLOT} == base


def test_model_and_optimizers_are_pr1291s(scripts) -> None:
    base, slot = scripts
    torch.manual_seed(1218)
    with cheap_init():
        ours, theirs = fp32(base.GPT(base.Hyperparameters())), fp32(slot.GPT(slot.Hyperparameters()))
    state = perturbed(ours, 1218)
    ours.load_state_dict(state, strict=True)
    theirs.load_state_dict(state, strict=True)
    x, _ = val_batch(64, 1, 32)
    with torch.no_grad():
        assert_close(ours.forward_logits(x), theirs.forward_logits(x), "logits", tol=0.0)
    groups = [[[p.shape for p in g["params"]] for opt in rec.Optimizers(rec.Hyperparameters(), model)
               for g in opt.param_groups] for rec, model in ((base, ours), (slot, theirs))]
    assert groups[0] == groups[1]
