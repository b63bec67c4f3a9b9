"""The one typed configuration of pgolf.

A run is described by a `Config` made of dataclass sections (`schema`), resolved in one direction,
each layer overriding the one before (`loader`):

    dataclass defaults (the official baseline) < preset TOML < --config TOML < environment < --set

The environment map (`env`) covers the official baseline's and the record scripts' variables. Every
problem (unknown key, wrong type, impossible combination) is collected by `validate` and raised as one
`ConfigError` listing each key, its origin and the fix, before any work starts.

The names below resolve on first use (`pgolf.lazy`), so a module that needs only the schema does not
import the loader and the validator (an exported script ships neither).
"""

from typing import TYPE_CHECKING

from pgolf.lazy import lazy_exports

if TYPE_CHECKING:  # the static view of the lazy names below
    from pgolf.config.env import ENV_VARS, OFFICIAL_ENV_VARS, RECORD_ENV_VARS
    from pgolf.config.introspect import choices
    from pgolf.config.issues import ConfigIssue, ConfigIssues
    from pgolf.config.loader import config_from_dict, load_config, read_toml_file, tomllib
    from pgolf.config.parsing import (
        eval_context,
        parse_fit_bits,
        parse_layer_list,
        reads_train_calibration,
        resolve_grad_accum,
    )
    from pgolf.config.presets import preset_names, read_preset
    from pgolf.config.schema import (
        CALIBRATION_SOURCES,
        FORBIDDEN_CALIBRATION,
        LORA_TARGETS,
        Config,
        DataConfig,
        EvalConfig,
        ModelConfig,
        OptimConfig,
        QuantConfig,
        RunConfig,
        TrainConfig,
    )
    from pgolf.config.validate import validate

_EXPORTS = {
    "ENV_VARS": "env", "OFFICIAL_ENV_VARS": "env", "RECORD_ENV_VARS": "env",
    "choices": "introspect",
    "ConfigIssue": "issues", "ConfigIssues": "issues",
    "config_from_dict": "loader", "load_config": "loader", "read_toml_file": "loader", "tomllib": "loader",
    "eval_context": "parsing", "parse_fit_bits": "parsing", "parse_layer_list": "parsing",
    "reads_train_calibration": "parsing", "resolve_grad_accum": "parsing",
    "preset_names": "presets", "read_preset": "presets",
    "CALIBRATION_SOURCES": "schema", "FORBIDDEN_CALIBRATION": "schema", "LORA_TARGETS": "schema", "Config": "schema",
    "DataConfig": "schema", "EvalConfig": "schema", "ModelConfig": "schema", "OptimConfig": "schema",
    "QuantConfig": "schema", "RunConfig": "schema", "TrainConfig": "schema",
    "validate": "validate",
}
__all__ = [
    "CALIBRATION_SOURCES", "ENV_VARS", "FORBIDDEN_CALIBRATION", "LORA_TARGETS", "OFFICIAL_ENV_VARS", "RECORD_ENV_VARS",
    "Config", "ConfigIssue", "ConfigIssues", "DataConfig", "EvalConfig", "ModelConfig", "OptimConfig", "QuantConfig",
    "RunConfig", "TrainConfig", "choices", "config_from_dict", "eval_context", "load_config", "parse_fit_bits",
    "parse_layer_list", "preset_names", "read_preset", "read_toml_file", "reads_train_calibration",
    "resolve_grad_accum", "tomllib", "validate",
]
__getattr__ = lazy_exports(__name__, _EXPORTS)
