"""Legality of every evaluation mode, tested from outside, and the ledger that enforces it inside."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pgolf.evaluate.ledger import LegalityError, NormalizationAudit, ScoreLedger
from pgolf.evaluate.legality import POLICY, ruling
from pgolf.evaluate.modes import VERIFY_MODES, run_mode
from pgolf.evaluate.sliding import evaluate_windows
from pgolf.evaluate.verify import perturb_after, verify_mode
from pgolf.evaluate.windows import Window, gather_batch
from testkit import present

COMPLIANT = [name for name in VERIFY_MODES if name != "slot-published"]


def _runner(fixture, mode):
    return lambda tokens, audit: run_mode(fixture.model, mode, fixture.cfg, fixture.scoring(tokens, audit=audit))


@pytest.mark.parametrize("name", COMPLIANT)
def test_future_tokens_never_change_earlier_losses(eval_fixture, name: str) -> None:
    """Replace every token after p: each loss of a target before p is unchanged (1e-6 relative)."""
    run = _runner(eval_fixture, VERIFY_MODES[name])
    reference = run(eval_fixture.tokens, None).losses
    assert reference is not None and len(reference) == eval_fixture.tokens.numel() - 1
    for seed, position in enumerate((60, 130, 200)):
        changed = present(run(perturb_after(eval_fixture.tokens, position, 1024, seed), None).losses)
        np.testing.assert_allclose(changed[:position], reference[:position], rtol=1e-6, atol=0)
        assert not np.allclose(changed[position:], reference[position:])  # the perturbation did reach the scores


def test_published_slot_fails_and_is_labelled(eval_fixture) -> None:
    report = verify_mode("slot-published", _runner(eval_fixture, VERIFY_MODES["slot-published"]),
                         eval_fixture.tokens, 1024, positions=2)
    causal = next(c for c in report["checks"] if c["condition"] == "causal+score_before_update")
    assert not report["passed"] and report["verdict"] == "NON-COMPLIANT" and not causal["passed"]
    assert all(t["changed_before"] > 0 for t in causal["trials"])
    assert report["ruling"]["compliant"] is False and report["ruling"]["policy"] == POLICY.id
    assert ruling("sliding+ttt-full+slot-published")["label"] == "NON-COMPLIANT"
    assert ruling("sliding+slot-context")["compliant"] is True


@pytest.mark.parametrize("name", ["sliding", "ttt-phased"])
def test_verify_passes_all_checks_on_compliant_modes(eval_fixture, name: str) -> None:
    report = verify_mode(name, _runner(eval_fixture, VERIFY_MODES[name]), eval_fixture.tokens, 1024, positions=1)
    assert report["passed"], report
    by_name = {c["condition"]: c for c in report["checks"]}
    assert by_name["single_pass"]["scored_once"] == eval_fixture.tokens.numel() - 1
    assert by_name["normalized"]["rows_checked"] > 0 and by_name["normalized"]["distribution_widths"] == [1024]


def test_normalization_audit_rejects_a_gold_only_score(eval_fixture) -> None:
    """A score that is not −log of a full softmax (here: the raw logit of the target) fails the audit."""
    model = eval_fixture.model

    def gold_only(batch):
        logits = model.logits(model.hidden(batch.x))
        return -logits.gather(-1, batch.y[..., None]).squeeze(-1), logits

    audit = NormalizationAudit(1024)
    evaluate_windows(gold_only, eval_fixture.scoring(audit=audit), 32, 8)
    assert audit.rows_checked > 0 and not audit.passed() and audit.max_nll_error > 1e-3


def test_ledger_refuses_rescoring_and_learning_before_scoring(eval_fixture) -> None:
    ledger = ScoreLedger(100, eval_fixture.lut, torch.device("cpu"))
    batch = gather_batch(eval_fixture.tokens, [Window(0, 10, 0)], torch.device("cpu"))
    ledger.record(batch, torch.ones(1, 10))
    ledger.released(eval_fixture.tokens, 0, 10)  # scored: may be learned from
    with pytest.raises(LegalityError, match=r"scored first|score first"):
        ledger.released(eval_fixture.tokens, 5, 11)
    again = gather_batch(eval_fixture.tokens, [Window(5, 10, 4)], torch.device("cpu"))
    with pytest.raises(LegalityError, match="already scored"):
        ledger.record(again, torch.ones(1, 10))


def test_dumped_losses_are_the_scored_losses_in_stream_order(eval_fixture) -> None:
    """The per-token losses sum to the reported loss, and a mode's dump does not depend on batching."""
    for name in ("sliding", "ttt-full", "ttt-lora"):
        mode = VERIFY_MODES[name]
        one = run_mode(eval_fixture.model, mode, eval_fixture.cfg, eval_fixture.scoring(batch_seqs=1))
        many = run_mode(eval_fixture.model, mode, eval_fixture.cfg, eval_fixture.scoring(batch_seqs=5))
        losses = present(one.losses)
        assert losses.dtype == np.float64 and len(losses) == one.bpb.val_tokens == 288
        assert losses.sum() == pytest.approx(one.bpb.loss_sum_nats, rel=1e-12)
        if name != "ttt-lora":  # LoRA batches documents, not windows
            np.testing.assert_allclose(losses, present(many.losses), rtol=1e-5)


def test_policy_is_named_versioned_and_has_the_four_conditions() -> None:
    assert POLICY.id == "pgolf-eval-legality/1"
    assert [c.key for c in POLICY.conditions] == ["causal", "normalized", "score_before_update", "single_pass"]
    assert dataclasses.is_dataclass(POLICY)
