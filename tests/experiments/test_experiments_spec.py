"""Ablation files: designs expand to the right rows; bad files fail before any run, naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgolf.cli import main
from pgolf.experiments.spec import AblationError, example_files, load_ablation
from pgolf.quant.policy import load_policy

HEAD = """[ablation]
preset = "tiny"
seeds = [1, 2]
design = "{design}"
"""
FEATURES = """
[features.deep]
set = {{ model.num_layers = 5 }}

[features.wide]
set = {{ model.model_dim = 384 }}

[features.gain]
set = {{ model.qk_gain_init = 4.0 }}
"""


def _write(tmp_path: Path, text: str, name: str = "abl.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _spec(tmp_path: Path, design: str, extra: str = ""):
    return load_ablation(_write(tmp_path, HEAD.format(design=design) + FEATURES.format() + extra))


def test_one_factor_rows_are_baseline_plus_each_feature_alone(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "one_factor")
    rows = spec.configurations()
    assert [r.name for r in rows] == ["baseline", "deep", "wide", "gain"]
    assert [r.features for r in rows] == [(), ("deep",), ("wide",), ("gain",)]
    assert spec.baseline == "baseline"
    cfg = spec.resolve(rows[1], 2, tmp_path / "runs")
    assert (cfg.model.num_layers, cfg.model.model_dim, cfg.run.seed, cfg.run.run_id) == (5, 256, 2, "deep-s2")


def test_leave_one_out_rows_drop_one_feature_each(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "leave_one_out")
    assert [r.name for r in spec.configurations()] == ["deep+wide+gain", "wide+gain", "deep+gain", "deep+wide"]
    assert spec.baseline == "deep+wide+gain"
    cfg = spec.resolve(spec.configurations()[2], 1, tmp_path)
    assert (cfg.model.num_layers, cfg.model.model_dim, cfg.model.qk_gain_init) == (5, 256, 4.0)


def test_forward_design_bounds_its_cost(tmp_path: Path) -> None:
    spec = _spec(tmp_path, "forward")
    assert [r.name for r in spec.configurations()] == ["baseline"]
    assert spec.max_runs() == (1 + 3 + 2 + 1) * 2  # baseline, then at most 3 + 2 + 1 feature sets, × 2 seeds


def test_declared_rows_override_in_order_common_features_own(tmp_path: Path) -> None:
    text = HEAD.format(design="matrix") + FEATURES.format() + """
[common]
model.num_layers = 3
train.iterations = 7

[configs.plain]

[configs.mixed]
preset = "baseline"
features = ["deep"]
set = { "train.iterations" = 9 }
"""
    spec = load_ablation(_write(tmp_path, text))
    plain, mixed = (spec.resolve(r, 1, tmp_path) for r in spec.configurations())
    assert (plain.model.num_layers, plain.train.iterations, plain.run.preset) == (3, 7, "tiny")
    assert (mixed.model.num_layers, mixed.train.iterations, mixed.run.preset) == (5, 9, "baseline")


@pytest.mark.parametrize(("body", "line", "words"), [
    ('[configs.a]\nset = { model.num_layerz = 3 }\n', 7, "model.num_layerz"),
    ('[configs.a]\npreset = "tinyy"\n', 7, "unknown preset 'tinyy'"),
    ('[configs.a]\n\n[configs.b]\nset = { model.model_dim = 250 }\n', 9, "model.model_dim"),
    ('[configs.a]\nfeatures = ["fast"]\n', 7, "unknown feature 'fast'"),
    ('[configs.a]\n\n[configs.b]\nset = { model.num_layers = 4 }\n', 8, "resolve to the same config"),
])
def test_bad_entries_name_file_and_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = _write(tmp_path, HEAD.format(design="matrix") + "\n" + body)
    with pytest.raises(AblationError) as caught:
        load_ablation(path).validate(tmp_path / "runs")
    assert str(caught.value).startswith(f"{path}:{line}:")
    assert words in str(caught.value)


def test_empty_seed_list_and_unknown_entries_are_refused(tmp_path: Path) -> None:
    empty = _write(tmp_path, '[ablation]\nseeds = []\n[configs.a]\n', "empty.toml")
    with pytest.raises(AblationError, match=r"empty.toml:2: seeds is empty"):
        load_ablation(empty)
    typo = _write(tmp_path, '[ablation]\nseeds = [1]\nbaselin = "a"\n[configs.a]\n', "typo.toml")
    with pytest.raises(AblationError, match=r"typo.toml:3: unknown entry 'baselin'"):
        load_ablation(typo)


def test_conflicting_features_in_one_row_are_refused(tmp_path: Path) -> None:
    text = HEAD.format(design="matrix") + """
[features.a]
set = { model.num_layers = 3 }
[features.b]
set = { model.num_layers = 5 }
[configs.both]
features = ["a", "b"]
"""
    with pytest.raises(AblationError, match=r":9: features 'b' and \[features.a\] both set model.num_layers"):
        load_ablation(_write(tmp_path, text)).validate(tmp_path)


def test_cli_refuses_a_bad_file_before_any_run(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, HEAD.format(design="matrix") + '[configs.a]\nset = { train.iterationz = 3 }\n')
    assert main(["ablate", str(path), "--out", str(tmp_path / "out")]) == 2
    assert f"{path}:6:" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


def test_shipped_examples_validate_and_each_feature_changes_its_technique(tmp_path: Path) -> None:
    files = example_files()
    assert {p.stem for p in files} == {f"proteus_1425_phase{n}{cpu}" for n in (1, 2) for cpu in ("", "_cpu")}
    for path in files:
        spec = load_ablation(path)
        spec.validate(tmp_path)
        assert spec.seeds and len(spec.configurations()) in (3, 7)
        rows = {row.name: spec.resolve(row, 42, tmp_path) for row in spec.configurations()}
        base = rows[spec.baseline]
        assert base.model.parallel_residual == "off" and base.eval.slot == "off"
        for name, cfg in rows.items():
            features = set(next(r for r in spec.configurations() if r.name == name).features)
            assert (cfg.model.parallel_residual == "proteus") == ("parallel" in features)
            assert (cfg.eval.slot == "published") == ("slot" in features)
            assert (cfg.quant.policy != base.quant.policy) == bool(features & {"int5", "int5_n8"})
            assert load_policy(cfg.quant.policy).rules  # relative policy files resolve beside the ablation file


def test_phase2_int5_policies_put_int5_on_the_stated_number_of_mlp_layers() -> None:
    folder = example_files()[0].parent / "policies"
    for count in (2, 6, 10):
        rule = next(r for r in load_policy(str(folder / f"proteus_int5x{count}.toml")).rules if r.fmt.name == "int5")
        assert isinstance(rule.layers, tuple)
        assert len(rule.layers) == count and set(rule.layers) <= set(range(11))
