"""Score-first TTT: it learns from what it scored, leaves the artifact alone, and LoRA/phased behave
as the records define them."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from pgolf.evaluate.lora import LoRASet
from pgolf.evaluate.modes import VERIFY_MODES, lora_settings, run_mode
from pgolf.evaluate.ttt import cosine_lr, trainable_copy
from pgolf.evaluate.ttt_lora import chunk_window, document_spans, phase_boundaries
from testkit import present

HALF = 144


def _repeated(fx) -> torch.Tensor:
    """A stream whose second half repeats the first: learning from the scored half pays off later."""
    first = fx.tokens[:HALF]
    return torch.cat([first, first, first[:1]])


def _with(cfg, **eval_fields):
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, **eval_fields))


@pytest.mark.parametrize("name", ["ttt-full", "ttt-lora"])
def test_ttt_learns_from_scored_tokens(eval_fixture, name: str) -> None:
    fx = eval_fixture
    tokens = _repeated(fx)
    cfg = _with(fx.cfg, ttt_epochs=2, ttt_lora_lr=0.01, ttt_lora_docs=1)
    sliding = run_mode(fx.model, VERIFY_MODES["sliding"], cfg, fx.scoring(tokens))
    adapted = run_mode(fx.model, VERIFY_MODES[name], cfg, fx.scoring(tokens))
    first, second = slice(0, 64), slice(HALF + 64, 2 * HALF)
    adapted_losses, sliding_losses = present(adapted.losses), present(sliding.losses)
    assert adapted_losses[second].mean() < sliding_losses[second].mean() - 0.05  # the repeat got cheaper
    if name == "ttt-full":  # the first chunk is scored before any update
        np.testing.assert_allclose(adapted_losses[first], sliding_losses[first], rtol=1e-5)
    assert adapted.bpb.val_tokens == sliding.bpb.val_tokens == tokens.numel() - 1


def test_adaptation_is_transient_and_frozen_blocks_stay_frozen(eval_fixture) -> None:
    fx = eval_fixture
    before = {k: v.clone() for k, v in fx.model.state_dict().items()}
    run_mode(fx.model, VERIFY_MODES["ttt-phased"], fx.cfg, fx.scoring())
    run_mode(fx.model, VERIFY_MODES["ttt-full"], fx.cfg, fx.scoring())
    assert all(torch.equal(before[k], v) for k, v in fx.model.state_dict().items())
    copy, params = trainable_copy(fx.model, freeze_blocks=1)
    trainable = {name for name, p in copy.named_parameters() if p.requires_grad}
    assert not any(name.startswith("blocks.0.") for name in trainable)
    assert any(name.startswith("blocks.1.") for name in trainable) and len(params) == len(trainable)


def test_cosine_lr_runs_from_lr0_to_zero_over_chunks() -> None:
    assert cosine_lr(0.005, 0, 5) == 0.005 and cosine_lr(0.005, 4, 5) == pytest.approx(0.0, abs=1e-15)
    assert cosine_lr(0.005, 2, 5) == pytest.approx(0.0025) and cosine_lr(0.005, 0, 1) == 0.005


def test_documents_partition_the_targets_and_chunks_stay_inside_them(eval_fixture) -> None:
    fx = eval_fixture
    n = fx.tokens.numel() - 1
    spans = document_spans(fx.tokens, n, bos_id=1)
    assert [s for s, _ in spans] == [0, 37, 70, 101, 150, 181, 220, 251, 270]
    assert spans[-1][1] == n and all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    for span in spans:
        for index in range(math.ceil((span[1] - span[0]) / 8)):
            w = chunk_window(span, index, chunk=8, context=20)
            assert span[0] <= w.start and w.end <= span[1] and w.length <= 20  # never crosses a document
            assert w.first_target == span[0] + 8 * index
    assert int(fx.tokens[spans[0][1]]) == 1  # a document's last target is the next document's BOS


def test_fresh_adapters_change_nothing(eval_fixture) -> None:
    fx = eval_fixture
    x = fx.tokens[:64].view(2, 32)
    plain = fx.model.logits(fx.model.hidden(x))
    lora = LoRASet(fx.model, ["q", "k", "v", "o", "mlp", "head"], slots=2, rank=4, alpha=8.0, seed=0)
    lora.rows = torch.tensor([0, 1])
    adapted = lora.logits(fx.model, fx.model.hidden(x))
    lora.remove()
    torch.testing.assert_close(adapted, plain.float(), rtol=0, atol=1e-6)
    assert len(lora.adapters) == 5 * fx.cfg.model.num_layers


def test_phased_equals_lora_until_the_first_phase_then_differs(eval_fixture) -> None:
    fx = eval_fixture
    lora = run_mode(fx.model, VERIFY_MODES["ttt-lora"], fx.cfg, fx.scoring())
    phased = run_mode(fx.model, VERIFY_MODES["ttt-phased"], fx.cfg, fx.scoring())
    assert phase_boundaries(lora_settings(fx.cfg, phased=True)) == [2, 4]  # 4 prefix documents, 2 phases
    first_phase_end = 70  # the end of document 2
    phased_losses, lora_losses = present(phased.losses), present(lora.losses)
    np.testing.assert_allclose(phased_losses[:first_phase_end], lora_losses[:first_phase_end], rtol=1e-6)
    assert not np.allclose(phased_losses[first_phase_end:], lora_losses[first_phase_end:])


def test_ttt_qat_params_fake_quantize_only_the_training_forward(eval_fixture) -> None:
    """eval.ttt_qat_params changes what TTT learns (not the first chunk's scores); an unknown name is refused."""
    from pgolf.errors import UserError

    fx = eval_fixture
    plain = run_mode(fx.model, VERIFY_MODES["ttt-full"], fx.cfg, fx.scoring())
    cfg = _with(fx.cfg, ttt_qat_params="blocks.0.mlp.fc.weight,blocks.1.attn.proj.weight", ttt_qat_bits=2)
    quantized = run_mode(fx.model, VERIFY_MODES["ttt-full"], cfg, fx.scoring())
    a, b = present(plain.losses), present(quantized.losses)
    chunk = fx.cfg.eval.ttt_chunk_tokens
    np.testing.assert_array_equal(a[:chunk], b[:chunk])
    assert np.abs(a[chunk:] - b[chunk:]).max() > 1e-4
    with pytest.raises(UserError, match="ttt_qat_params"):
        run_mode(fx.model, VERIFY_MODES["ttt-full"], _with(fx.cfg, ttt_qat_params="no.such.weight"), fx.scoring())
