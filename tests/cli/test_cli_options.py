"""The parser: one table of commands; options that set a config key are generated from the schema."""

from __future__ import annotations

import argparse

import pytest

from pgolf.cli import COMMANDS, GROUPS, build_parser, main
from pgolf.config.introspect import field_docs, schema_fields
from pgolf.config.options import SetField


def _subparser(path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path.split():
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _field_actions(parser: argparse.ArgumentParser) -> list[SetField]:
    return [a for a in parser._actions if isinstance(a, SetField)]


def test_every_command_of_the_table_parses_to_its_handler() -> None:
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    assert {n.split()[0] for n in names if " " in n} == set(GROUPS)
    for command in COMMANDS:
        assert _subparser(command.name).get_default("func") is command.func


def test_generated_options_follow_their_field() -> None:
    seen = 0
    for command in COMMANDS:
        for action in _field_actions(_subparser(command.name)):
            info = schema_fields()[action.key]
            assert tuple(action.choices or ()) == info.choices
            assert action.type is (None if info.base in (str, bool) else info.base)
            assert action.help is not None and action.help.endswith(f"({action.key})")
            assert field_docs()[action.key] in action.help
            seen += 1
    assert seen >= 15  # eval, verify, bench eval, pack


def test_generated_options_append_to_the_overrides_in_order() -> None:
    args = build_parser().parse_args(["eval", "run", "--set", "eval.stride=8", "--stride", "64", "--ttt", "lora",
                                      "--max-eval-seconds", "2.5", "--data", "/d"])
    assert args.overrides == ["eval.stride=8", "eval.stride=64", "eval.ttt=lora", "eval.max_eval_seconds=2.5",
                              "data.dataset=/d"]
    assert not hasattr(args, "stride") and not hasattr(args, "ttt")
    args = build_parser().parse_args(["pack", "run", "--gptq", "--codec", "brotli"])
    assert args.overrides == ["quant.gptq=true", "quant.codec=brotli"]
    assert build_parser().parse_args(["pack", "run"]).overrides == []


def test_a_value_outside_the_choices_is_a_usage_error_listing_them(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["eval", "run", "--slot", "sometimes"])
    assert exit_.value.code == 2
    assert "choose from off, context, published" in capsys.readouterr().err.replace("'", "")


def test_config_show_doc_prints_every_field_documented(capsys) -> None:
    assert main(["config", "show", "--preset", "tiny", "--doc"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n# ") + out.startswith("# ") >= len(schema_fields())
    assert "# transformer blocks (physical layers) — int; default 9\nnum_layers = 4" in out
