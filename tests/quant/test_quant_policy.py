"""Policies as data: shipped policies, first-match rules, layer slices, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pgolf.config import ModelConfig
from pgolf.errors import ConfigError
from pgolf.model.gpt import GPT
from pgolf.quant.policy import assign_formats, load_policy, parse_policy, policy_names


def state_dict_shapes(num_layers: int = 11, dim: int = 512) -> dict[str, torch.Tensor]:
    """The real GPT's tensor names and shapes, without allocating (meta device)."""
    with torch.device("meta"):
        model = GPT(ModelConfig(num_layers=num_layers, model_dim=dim, mlp_mult=3.0))
    return dict(model.state_dict())


def test_every_shipped_policy_assigns_every_tensor_of_the_model() -> None:
    shapes = state_dict_shapes()
    assert {"int6", "int5mlp", "proteus", "sdclip", "int4"} <= set(policy_names())
    for name in policy_names():
        assignment = assign_formats(load_policy(name), shapes)
        assert set(assignment.formats) == set(shapes)
        # the records' exports (#1291, PROTEUS, #1855) keep every tensor of ≤ 65,536 elements in fp16, controls included
        fp16_controls = name in ("pr1291", "proteus", "sdclip")
        assert assignment.formats["blocks.0.attn_scale"].name == ("fp16" if fp16_controls else "fp32")
        assert assignment.formats["blocks.4.attn.c_q.weight"].bits is not None


def test_proteus_gives_int5_to_the_middle_mlps_only() -> None:
    formats = assign_formats(load_policy("proteus"), state_dict_shapes(11)).formats
    mlp_bits = [formats[f"blocks.{i}.mlp.fc.weight"].bits for i in range(11)]
    assert mlp_bits == [6, 6, 6, 5, 5, 5, 5, 5, 6, 6, 6]
    assert {formats[f"blocks.{i}.attn.proj.weight"].bits for i in range(11)} == {6}
    assert formats["tok_emb.weight"].bits == 8
    assert str(load_policy("sdclip").rules[2].fmt) == "int7/sd:14"


def test_rule_matching_no_tensor_is_a_warning_naming_its_pattern() -> None:
    warnings = assign_formats(load_policy("proteus"), state_dict_shapes(4)).warnings
    # a plain 4-layer model has no layers 3:-3 and (no recurrence) no untied recurrence MLPs: one warning each
    # (its control tensors are the small tensors of the fp16 rule)
    assert len(warnings) == 2
    assert "blocks.*.mlp.*" in warnings[0] and "layers 3:-3" in warnings[0]
    assert "recur_mlps.*" in warnings[1]


def test_unassigned_tensor_is_an_error_naming_it() -> None:
    policy = parse_policy({"rule": [{"match": "blocks.*", "format": "fp16"}]}, "partial")
    with pytest.raises(ConfigError, match=r"leaves 2 tensor.*skip_weights.*tok_emb\.weight"):
        assign_formats(policy, state_dict_shapes(2, 64))


def test_layer_lists_size_bounds_and_first_match_wins() -> None:
    policy = parse_policy({"rule": [
        {"match": "*", "max_numel": 64, "format": "fp32"},
        {"match": "blocks.*.mlp.*", "layers": [0, -1], "format": "int4", "clip": "max"},
        {"match": "*", "format": "bf16"},
    ]}, "custom")
    formats = assign_formats(policy, state_dict_shapes(3, 64)).formats
    assert formats["blocks.0.mlp.fc.weight"].name == "int4" and formats["blocks.2.mlp.proj.weight"].name == "int4"
    assert formats["blocks.1.mlp.fc.weight"].name == "bf16"
    assert formats["blocks.1.attn_scale"].name == "fp32"


@pytest.mark.parametrize(("table", "message"), [
    ({"rule": [{"match": "*", "format": "int9"}]}, "format 'int9' unknown"),
    ({"rule": [{"match": "*", "format": "fp16", "clip": "max"}]}, "'clip' and 'gptq' only apply"),
    ({"rule": [{"match": "*", "format": "fp16", "gptq": False}]}, "'clip' and 'gptq' only apply"),
    ({"rule": [{"match": "*", "format": "int6", "gptq": "no"}]}, "gptq must be true or false"),
    ({"rule": [{"match": "*", "format": "int6", "clip": "p99"}]}, "unknown clip rule"),
    ({"rule": [{"match": "*", "format": "int6", "bits": 6}]}, "unknown keys"),
    ({"rule": [{"match": "*", "format": "int6", "layers": "middle"}]}, "layers must be a slice"),
    ({"rule": []}, "at least one"),
    ({"rules": []}, "unknown top-level"),
])
def test_malformed_policies_name_the_rule_and_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_policy(table, "bad")


def test_pr1291_policy_keeps_tensors_up_to_65536_elements_in_fp16() -> None:
    """PR #1291's `numel() <= 65536` passthrough; above it, attention/MLP matrices int6 by the per-matrix clip
    search, every other matrix int8 with the baseline's clip and never GPTQ."""
    shapes = state_dict_shapes(2, 256) | {"edge": torch.empty(256, 256, device="meta"),
                                          "above": torch.empty(257, 256, device="meta")}
    formats = assign_formats(load_policy("pr1291"), shapes).formats
    assert formats["edge"].name == "fp16" and formats["blocks.0.attn.c_q.weight"].name == "fp16"  # 256² elements
    assert str(formats["above"]) == "int8/q:99.99984/rtn" and not formats["tok_emb.weight"].gptq
    assert str(formats["blocks.0.mlp.fc.weight"]) == "int6/matrix" and formats["blocks.0.mlp.fc.weight"].gptq


def test_int_format_on_a_vector_is_refused() -> None:
    policy = parse_policy({"rule": [{"match": "*", "format": "int6"}]}, "vectors")
    with pytest.raises(ConfigError, match="int formats need a matrix"):
        assign_formats(policy, state_dict_shapes(2, 64))


def test_policy_files_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('description = "all fp16"\n[[rule]]\nmatch = "*"\nformat = "fp16"\n')
    assert load_policy(str(path)).name == "mine"
    with pytest.raises(ConfigError, match="neither a shipped policy"):
        load_policy("no-such-policy")
    path.write_text("[[rule]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy(str(path))
