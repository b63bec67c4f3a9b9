"""pgolf.interop: record ↔ pgolf layouts, both ways, and the one-line refusal of a misfit checkpoint.

Shapes only (no record scripts needed): states are built from the registered layouts, on zeros."""

from __future__ import annotations

import pytest
import torch

from pgolf.cli import main
from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.interop import (
    find_fitting_preset,
    from_pgolf,
    get_format,
    record_shapes,
    to_pgolf,
)
from pgolf.interop.convert import pgolf_shapes, unheld_rows_at_init


def record_state(preset: str, unbanked: bool = False) -> dict[str, torch.Tensor]:
    fmt = get_format(preset)
    cfg = load_config(preset, env={}).model
    links = fmt.unbanked(cfg) if unbanked and fmt.unbanked else fmt.links(cfg)
    gen = torch.Generator().manual_seed(0)
    state = {name: torch.randn(shape, generator=gen) if len(shape) < 2 else torch.zeros(shape)
             for name, shape in record_shapes(links, pgolf_shapes(cfg)).items()}
    return unheld_rows_at_init(state, links)  # rows pgolf does not hold come back at the record's init


@pytest.mark.parametrize("preset", ["baseline", "pr635", "pr1291", "sota"])
def test_round_trip_is_exact(preset: str) -> None:
    state = record_state(preset)
    ours = to_pgolf(state, preset)
    assert {k: tuple(v.shape) for k, v in ours.items()} == pgolf_shapes(load_config(preset, env={}).model)
    back = from_pgolf(ours, preset)
    assert list(back) == list(state)
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_banks_unbank_in_the_records_order() -> None:
    state = record_state("pr635")
    state["qo_bank"] = torch.arange(22.0)[:, None, None].expand(22, 512, 512).clone()
    ours = to_pgolf(state, "pr635")
    assert ours["blocks.3.attn.c_q.weight"][0, 0] == 3 and ours["blocks.3.attn.proj.weight"][0, 0] == 14
    unbanked = from_pgolf(ours, "pr635", banked=False)
    assert "qo_bank" not in unbanked and torch.equal(to_pgolf(unbanked, "pr635")["blocks.3.attn.proj.weight"],
                                                    ours["blocks.3.attn.proj.weight"])


def test_record_rows_of_serial_layers_are_dropped_and_refilled() -> None:
    """#1855 keeps lane λ for all 11 layers; pgolf's `sota` for the parallel 8–10 only."""
    state = record_state("sota")
    state["parallel_resid_lambdas"] = torch.arange(22.0).reshape(11, 2)
    ours = to_pgolf(state, "sota")
    assert "blocks.7.parallel_resid" not in ours and ours["blocks.9.parallel_resid"].tolist() == [18.0, 19.0]
    back = from_pgolf(ours, "sota")["parallel_resid_lambdas"]
    assert torch.equal(back[8:], state["parallel_resid_lambdas"][8:]) and bool((back[:8] == 1.1).all())


def test_checkpoint_of_another_preset_names_tensor_and_fitting_preset() -> None:
    with pytest.raises(UserError) as info:
        to_pgolf(record_state("pr635"), "pr1291", what="final_model.pt")
    message = str(info.value)
    assert "\n" not in message and "final_model.pt does not fit preset 'pr1291'" in message
    assert "(tensor '" in message and "fits preset 'pr635': pass --preset pr635" in message
    assert find_fitting_preset(record_state("pr1291")) == "pr1291"


def test_export_weights_refuses_a_misfit_run_and_writes_nothing(tiny_run, tmp_path, capsys) -> None:
    out = tmp_path / "final_model.pt"
    assert main(["export-weights", str(tiny_run), "--preset", "pr635", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit preset 'pr635'" in err[0] and not out.exists()


@pytest.mark.parametrize("preset", ["pr635", "sota"])
def test_eval_reads_a_record_checkpoint_through_its_preset(tmp_path, preset: str) -> None:
    from pgolf.targets import _record_state

    path = tmp_path / "final_model.pt"
    torch.save(record_state(preset), path)
    cfg = load_config(preset, env={})
    state = _record_state(path, cfg)
    assert {k: tuple(v.shape) for k, v in state.items()} == pgolf_shapes(cfg.model)


def test_lite_clip_floors_scales_at_one_over_r() -> None:
    """Clip rule `lite` (PR #635's GPTQ-lite): rows smaller than 1 are quantized on the grid 1/31."""
    from pgolf.quant.intk import ClipRule, quantize_rows

    w = torch.tensor([[0.5, -0.25, 0.02, 0.0], [3.1, -1.0, 0.5, 0.25]])
    codes, scale = quantize_rows(w, 6, ClipRule.parse("lite"))
    assert scale[0].item() == pytest.approx(1 / 31, rel=1e-3) and codes[0].tolist() == [16, -8, 1, 0]
    assert scale[1].item() == pytest.approx(0.1, rel=1e-3) and codes[1, 0].item() == 31
