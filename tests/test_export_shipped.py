"""Shipped code: a run imports and ships only the modules its config reaches, the shipped forms run,
the budget counts the file as it ships, and every `_cpu` preset's export reproduces its run without pgolf."""

from __future__ import annotations

import json
import os
import random
import site
import subprocess
import sys
from pathlib import Path

import pytest

from pgolf.config import load_config
from pgolf.errors import UserError
from pgolf.export import (
    WRAPPER_CODECS,
    WRAPPER_ENCODINGS,
    _latin1_literal,
    compact,
    embedded_sources,
    minify,
    module_closure,
    shipped_code,
    shipped_config,
    wrap,
    write_export,
)
from pgolf.packing import shipped_budget
from pgolf.pipeline import run_train
from pgolf.train import provenance

# Paths of a technique that other configs of it do not take, each its own module: BigramHash (SmearGate stays in
# embeddings), full-model TTT (LoRA TTT shares only ttt), the fit scheme's packing loop, self-generated calibration.
SPLIT_PATHS = {"pgolf.model.bigram", "pgolf.evaluate.ttt_full", "pgolf.packing.fitted", "pgolf.quant.self_generated"}
TECHNIQUE_MODULES = {"pgolf.model.embeddings", "pgolf.model.gates", "pgolf.model.values", "pgolf.model.xsa",
                     "pgolf.model.init", "pgolf.evaluate.ttt", "pgolf.evaluate.ttt_lora", "pgolf.evaluate.slot",
                     "pgolf.quant.gptq", "pgolf.quant.fit", "pgolf.quant.int8", "pgolf.artifact.official",
                     "pgolf.model.documents", "pgolf.model.lanes", "pgolf.model.recurrence", *SPLIT_PATHS}
# Optimizer and training-loop techniques, imported where the config uses them: Parallel Muon (optim.muon_impl),
# PR #1289's repeated AdamW (optim.route_adam_updates), EMA/SWA (train.ema_decay, train.swa_every), late QAT.
TRAINING_TECHNIQUE_MODULES = {"pgolf.optim.parallel_muon", "pgolf.train.bank_sync", "pgolf.optim.repeated_adam",
                              "pgolf.optim.averaging", "pgolf.train.averaged_weights", "pgolf.quant.qat",
                              "pgolf.train.late_qat"}
CPU_PRESETS = ("pr635_cpu", "pr1291_cpu", "proteus_ablation_cpu", "proteus_v16_cpu", "sota_cpu")
# What packing imports beyond the int8 baseline: the policy schemes' family, payload transforms, multi-stream
# payloads and the lrzip runner.
PACKING_MODULES = {"pgolf.packing.planned", "pgolf.quant.policy", "pgolf.quant.mixed", "pgolf.quant.calibration",
                   "pgolf.artifact.transforms", "pgolf.artifact.streams", "pgolf.artifact.lrzip"}
# Builds `tiny`, then `sota_cpu`, printing the pgolf modules imported after each (one fresh interpreter).
_IMPORTS = ("import sys, json, torch; from pgolf.config import load_config; from pgolf.model.gpt import build_model; "
            "import pgolf.pipeline\nfor p in ('tiny', 'sota_cpu'):\n"
            " build_model(load_config(p, env={}).model, torch.device('cpu'))\n"
            " print(json.dumps(sorted(m for m in sys.modules if m.startswith('pgolf'))))")


def test_technique_modules_load_only_when_the_config_uses_them() -> None:
    result = subprocess.run([sys.executable, "-c", _IMPORTS], capture_output=True, text=True, check=False, timeout=300,
                            env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert result.returncode == 0, result.stderr[-2000:]
    tiny, sota = (set(json.loads(line)) for line in result.stdout.strip().splitlines()[-2:])
    assert not (TECHNIQUE_MODULES | TRAINING_TECHNIQUE_MODULES) & tiny
    assert {"pgolf.model.embeddings", "pgolf.model.gates", "pgolf.model.xsa", "pgolf.model.init"} <= sota


def test_module_set_follows_the_config() -> None:
    tiny, sota = module_closure(load_config("tiny", env={})), module_closure(load_config("sota_cpu", env={}))
    assert TECHNIQUE_MODULES & set(tiny) == {"pgolf.quant.int8"}  # tiny packs with the int8 baseline
    assert {"pgolf.evaluate.ttt_lora", "pgolf.quant.gptq", "pgolf.model.embeddings"} <= set(sota)
    assert "pgolf.quant.int8" not in sota and "pgolf.export" not in sota
    assert {"pgolf.pipeline", "pgolf.train.trainer"} <= set(tiny) <= set(module_closure())


def test_split_technique_paths_ship_only_with_the_configs_that_take_them() -> None:
    assert not SPLIT_PATHS & set(module_closure(load_config("sota_cpu", env={})))  # smear v2, phased LoRA TTT, GPTQ
    assert SPLIT_PATHS & set(module_closure(load_config("pr635_cpu", env={}))) == {"pgolf.model.bigram",
                                                                                   "pgolf.evaluate.ttt_full"}
    fit_ar = load_config("pr1291_cpu", env={}, overrides=["quant.scheme=fit", "quant.calibration=ar"])
    assert SPLIT_PATHS & set(module_closure(fit_ar)) == {"pgolf.packing.fitted", "pgolf.quant.self_generated"}
    # each Muon flavour ships only with its runs
    assert "pgolf.optim.round_robin" in module_closure(load_config("tiny", env={}))
    assert "pgolf.optim.round_robin" not in module_closure(load_config("sota_cpu", env={}))


def test_training_techniques_ship_only_with_the_configs_that_use_them() -> None:
    presets = ("tiny", "baseline", "pr1291_cpu", "proteus_v16_cpu")
    shipped = {p: TRAINING_TECHNIQUE_MODULES & set(module_closure(load_config(p, env={}))) for p in presets}
    assert not shipped["tiny"] and not shipped["baseline"]
    assert shipped["pr1291_cpu"] == {"pgolf.optim.averaging", "pgolf.train.averaged_weights"}  # EMA only
    assert shipped["proteus_v16_cpu"] == TRAINING_TECHNIQUE_MODULES  # parallel Muon, routes, EMA, late QAT


def test_packing_modules_follow_the_quant_config() -> None:
    closures = {p: set(module_closure(load_config(p, env={}))) for p in ("tiny", "baseline", "pr635_cpu",
                                                                         "pr1291_cpu", "sota_cpu")}
    shipped = {p: PACKING_MODULES & closure for p, closure in closures.items()}
    assert shipped["tiny"] == shipped["baseline"] == {"pgolf.artifact.transforms"}  # int8, bykind, zlib
    untransformed = load_config("baseline", env={}, overrides=["quant.transform=none"])
    assert not PACKING_MODULES & set(module_closure(untransformed))
    assert shipped["pr635_cpu"] == {"pgolf.packing.planned", "pgolf.quant.policy", "pgolf.quant.mixed",
                                    "pgolf.artifact.transforms"}  # RTN, bykind, zstd
    assert shipped["pr1291_cpu"] == shipped["pr635_cpu"] | {"pgolf.quant.calibration"}
    assert shipped["sota_cpu"] == PACKING_MODULES  # GPTQ, grouped streams, auto codec
    assert not any("pgolf.artifact.imported_code" in closure for closure in closures.values())


def test_model_parts_kernels_and_tokenizer_families_follow_the_config() -> None:
    kernels, families = {"pgolf.model.kernels.softcap_ce", "pgolf.model.kernels.leaky_relu2"}, {
        "pgolf.data.byte260", "pgolf.data.tiktoken_bpe", "pgolf.data.caseops", "pgolf.data.sidecar"}
    baseline = set(module_closure(load_config("baseline", env={})))
    assert not {"pgolf.model.documents", "pgolf.model.lanes", "pgolf.model.recurrence"} & baseline
    assert kernels <= baseline  # fused_kernels = auto: a run on a GPU with Triton uses them
    assert not kernels & set(module_closure(load_config("baseline", overrides=["model.fused_kernels=off"], env={})))
    assert {"pgolf.model.lanes", "pgolf.model.recurrence"} <= set(module_closure(load_config("proteus_v16", env={})))
    assert "pgolf.model.documents" in module_closure(load_config("sota_cpu", env={}))
    # the baseline's tokenizer is not here, so it may be CaseOps; the shipped sp1024 sample's is plain SentencePiece
    assert families - baseline == {"pgolf.data.byte260", "pgolf.data.tiktoken_bpe"}
    assert not families & set(module_closure(shipped_config(load_config("tiny", env={}))))
    byte = set(module_closure(load_config("tiny", overrides=["data.tokenizer=byte260"], env={})))
    assert families & byte == {"pgolf.data.byte260", "pgolf.data.sidecar"}


def test_minify_drops_function_annotations_and_keeps_class_fields() -> None:
    source = ('from dataclasses import dataclass\nimport typing\n@dataclass\nclass P:\n    """Doc."""\n    x: int = 1\n'
              '    y: "typing.Any" = None\n\ndef f(a: int, *b: str, c: float = 2.0, **d: bytes) -> float:\n'
              '    n: int\n    m: int = a\n    return m * c\n')
    small = minify(source)
    assert "-> float" not in small and "a: int" not in small and "n: int" not in small and "Doc." not in small
    scope: dict = {}
    exec(small, scope)  # running the minified program is the test
    assert scope["f"](3) == 6.0 and scope["P"]().x == 1 and list(scope["P"].__dataclass_fields__) == ["x", "y"]


@pytest.mark.parametrize("codec", WRAPPER_CODECS)
@pytest.mark.parametrize("encoding", WRAPPER_ENCODINGS)
def test_every_wrapper_runs_its_script(codec: str, encoding: str, tmp_path: Path) -> None:
    data = random.Random(0).randbytes(20_000)  # incompressible: the stream holds every byte value
    path = tmp_path / "w.py"
    path.write_bytes(wrap(f"RESULT = sum(range(10))\nDATA = {data!r}\n", codec, encoding))
    scope: dict = {"__file__": str(path)}
    exec(compile(path.read_bytes(), str(path), "exec"), scope)  # the wrapper must run, read as Python reads a file
    assert scope["RESULT"] == 45 and scope["DATA"] == data
    if encoding == "base85":
        path.read_bytes().decode("ascii")  # plain ASCII, as the records ship


@pytest.mark.parametrize("data", [b"", b"'", b"''", b"'''", b"a'", b"\\", b"\\'", b"'\\", b"\x00", b"\x007",
                                  b"\r", b"\r\n", b"\n", b"\x85\xff\xe2\x80\xa8", bytes(range(256))])
def test_latin1_literal_is_exact(data: bytes) -> None:
    source = f"# coding: latin-1\nX = {_latin1_literal(data)}\n".encode("latin-1")
    scope: dict = {}
    exec(compile(source, "x.py", "exec"), scope)
    assert scope["X"].encode("latin-1") == data


def test_compressed_form_is_the_smallest_wrapper_and_the_budget_counts_it(small_dataset) -> None:
    cfg = load_config("tiny", env={}, overrides=[f"data.dataset={small_dataset.dataset_dir}",
                                                 f"data.tokenizer={small_dataset.tokenizer_path}"])
    info = shipped_code(cfg)
    minified = shipped_code(cfg, "minified")
    codec, _, encoding = info.form.removeprefix("minified+").partition("+")
    sizes = {(c, e): len(wrap(_script(cfg), c, e)) for c in WRAPPER_CODECS for e in WRAPPER_ENCODINGS}
    assert info.bytes == sizes[codec, encoding or "base85"] == min(sizes.values()) < minified.bytes \
        < shipped_code(cfg, "plain").bytes
    budget = shipped_budget(cfg, 1000)
    assert budget.code_bytes == info.bytes and budget.total == info.bytes + 1000 and "minified+" in budget.report()
    ascii_only = shipped_code(cfg, "compressed_ascii")
    assert ascii_only.bytes == min(sizes[c, "base85"] for c in WRAPPER_CODECS) and "latin1" not in ascii_only.form


def _script(cfg) -> str:
    from pgolf.export import render_script

    return render_script(cfg, f"pgolf run of preset {cfg.run.preset or 'custom'}", provenance.code_hash(), True)[0]


def test_export_of_other_code_is_refused(tmp_path: Path, small_dataset) -> None:
    cfg = load_config("tiny", env={}, overrides=[f"data.dataset={small_dataset.dataset_dir}",
                                                 f"data.tokenizer={small_dataset.tokenizer_path}"])
    target = tmp_path / "train_gpt.py"
    with pytest.raises(UserError, match="would embed code that did not train; check out the commit"):
        write_export(target, cfg, "t", "run1", "0" * 64)
    assert not target.exists() and not list(tmp_path.iterdir())


def test_cli_export_writes_the_runs_file_in_the_chosen_form(small_dataset, tmp_path: Path, capsys) -> None:
    from pgolf.cli import main
    from testkit import tiny_overrides

    cfg = load_config(env={}, overrides=tiny_overrides(small_dataset, **{"train.iterations": 2,
                                                                         "run.out_dir": tmp_path, "run.run_id": "r"}))
    run_train(cfg)
    out = tmp_path / "train_gpt.py"
    assert main(["export", str(tmp_path / "r"), "--out", str(out), "--form", "minified"]) == 0
    assert f"{out}: {out.stat().st_size:,} bytes (minified," in capsys.readouterr().out
    text = out.read_text()
    assert "def run_train" in text and "The stages wired together" not in text  # module docstrings are gone


_RUN = "import sys; sys.path[:0] = {paths!r}; import runpy; runpy.run_path('train_gpt.py', run_name='__main__')"


@pytest.mark.slow
@pytest.mark.parametrize("preset", CPU_PRESETS)
def test_compressed_export_of_every_cpu_preset_reproduces_its_run(preset: str, small_dataset, tmp_path: Path) -> None:
    overrides = {
        "data.dataset": small_dataset.dataset_dir, "data.tokenizer": small_dataset.tokenizer_path,
        "model.model_dim": 64, "train.train_seq_len": 64, "train.train_batch_tokens": 512, "train.iterations": 2,
        "train.max_wallclock_seconds": 0, "train.dtype": "fp32", "train.device": "cpu", "train.train_log_every": 0,
        "train.threads": 1, "eval.val_batch_size": 4096, "eval.val_max_tokens": 4096, "quant.calibration_seqs": 4,
        "eval.ttt_lora_rank": 8, "eval.ttt_lora_docs": 8,  # LoRA TTT's cost on one CPU thread is in these sizes
        "run.out_dir": tmp_path / "runs", "run.run_id": "original",
    }
    cfg = load_config(preset, env={}, overrides=[f"{k}={v}" for k, v in overrides.items()])
    original = run_train(cfg)
    title = f"pgolf run of preset {cfg.run.preset}"  # the title `pgolf train` counts with
    info = write_export(tmp_path / "train_gpt.py", cfg, title, "original", original["manifest"]["code_sha256"])
    assert info.form.startswith("minified+")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEED", "RUN_ID")} | {"RUN_ID": "exported"}
    # pgolf is not importable here
    result = subprocess.run([sys.executable, "-S", "-c", _RUN.format(paths=site.getsitepackages())], cwd=tmp_path,
                            env=env, capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rerun = json.loads((tmp_path / "runs" / "exported" / "summary.json").read_text())
    assert (rerun["val_bpb"], rerun["weights_sha256"]) == (original["val_bpb"], original["weights_sha256"])
    assert rerun["code_bytes"] == info.bytes  # the exported run counts its own file
    assert original["code_bytes"] == info.bytes  # pgolf train counted exactly what ships


def test_the_config_loader_and_validator_ship_only_where_a_run_reaches_them() -> None:
    plain = module_closure(load_config("sota_cpu", env={}))
    proxy = module_closure(load_config("tiny", env={}, overrides=["train.proxy_world_size=8"]))
    assert "pgolf.config.embedded" in plain and not {"pgolf.config.loader", "pgolf.config.validate"} & set(plain)
    assert "pgolf.config.validate" in proxy  # proxy mode validates the config it rescales
    assert "pgolf.config.parsing" in plain  # reached through the lazy `from pgolf.config import resolve_grad_accum`


def test_the_stage_machinery_ships_only_with_stages_beyond_plain() -> None:
    assert "pgolf.evaluate.modes" not in module_closure(load_config("baseline", env={}))
    assert "pgolf.evaluate.modes" in module_closure(load_config("baseline", env={}, overrides=["eval.stride=64"]))
    assert "pgolf.evaluate.modes" in module_closure(load_config("pr635_cpu", env={}))  # TTT, best_val selection


def test_compact_renames_only_the_globals_nothing_else_names() -> None:
    source = ("def _private_helper(x):\n    return x + 1\ndef public_entry(x):\n    return _private_helper(x) * "
              "getattr(__import__('math'), 'floor')(2.5) + len(_by_string())\ndef _by_string():\n"
              "    return '_by_string'\n")
    kept = compact(source)
    renamed = compact(source, frozenset({"public_entry"}))
    assert "_private_helper" in kept and "_private_helper" not in renamed
    assert "def public_entry" in renamed and "def _by_string" in renamed  # named elsewhere / in a string
    scope: dict = {}
    exec(renamed, scope)
    assert scope["public_entry"](1) == 2 * 2 + 10


def test_checkpoints_ship_only_with_periodic_checkpoints() -> None:
    assert "pgolf.train.checkpoint" not in module_closure(load_config("sota_cpu", env={}))
    periodic = load_config("tiny", env={}, overrides=["train.checkpoint_every=5"])
    assert "pgolf.train.checkpoint" in module_closure(periodic)


def test_class_annotations_are_shortened_unless_something_embedded_reads_them() -> None:
    plain = embedded_sources(module_closure(load_config("sota_cpu", env={})))
    proxy = embedded_sources(module_closure(load_config("tiny", env={}, overrides=["train.proxy_world_size=8"])))
    assert "Literal[" not in plain["pgolf.config.schema"] and "vocab_size:int=1024" in plain["pgolf.config.schema"]
    assert "Literal[" in proxy["pgolf.config.schema"]  # the validator reads the choices through get_type_hints


def test_shrink_results_are_kept_on_disk_and_recomputed_when_damaged(tmp_path: Path, monkeypatch) -> None:
    from pgolf import export

    monkeypatch.setenv("PGOLF_CACHE", str(tmp_path))
    # a module the script imports, so that something is embedded
    sources = (("pgolf.pipeline", "def _helper(x):\n    '''Doc.'''\n    return x + 1\ndef run_train(cfg):\n"
                                  "    return _helper(cfg)\n"),)
    expected = export.shrink(sources)
    assert expected["pgolf.pipeline"]
    assert export._stored_shrink.__wrapped__(sources) == expected
    (entry,) = (tmp_path / export.SHRINK_CACHE).iterdir()
    entry.write_text(json.dumps({"pgolf.pipeline": "stored = 1\n"}))  # what is stored is what is read back
    assert export._stored_shrink.__wrapped__(sources) == {"pgolf.pipeline": "stored = 1\n"}
    for damaged in ("{not json", "[1, 2]", '{"pgolf.pipeline": 3}'):
        entry.write_text(damaged)
        assert export._stored_shrink.__wrapped__(sources) == expected
        assert json.loads(entry.read_text()) == expected  # and written again
    other = (("pgolf.pipeline", sources[0][1].replace("x + 1", "x + 2")),)
    assert export._stored_shrink.__wrapped__(other) != expected  # another source is another entry
    assert len(list((tmp_path / export.SHRINK_CACHE).iterdir())) == 2


def test_an_unwritable_shrink_cache_is_skipped(tmp_path: Path, monkeypatch) -> None:
    from pgolf import export

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("PGOLF_CACHE", str(blocker))  # the cache folder cannot be created under a file
    sources = (("pgolf.pipeline", "def run_train(cfg):\n    return cfg\n"),)
    assert export._stored_shrink.__wrapped__(sources) == export.shrink(sources)


def test_a_pgolf_module_the_export_left_out_is_refused_by_name() -> None:
    from pgolf.export import render_script

    script, modules = render_script(load_config("tiny", env={}), "t", "0" * 64, minified=True)
    scope: dict = {"__name__": "exported", "__file__": "train_gpt.py"}
    exec(compile(script, "train_gpt.py", "exec"), scope)  # defines the finder; `main` does not run
    finder = scope["_EmbeddedModules"]()
    assert "pgolf.data.caseops" not in modules and finder.find_spec("pgolf.pipeline") is not None
    with pytest.raises(ImportError, match=r"pgolf\.data\.caseops is not in this script: .* export that config"):
        finder.find_spec("pgolf.data.caseops")  # e.g. TOKENIZER_PATH names a CaseOps tokenizer
    assert finder.find_spec("numpy") is None  # everything else is imported as usual
