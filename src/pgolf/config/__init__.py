"""The one typed configuration of pgolf.

A run is described by a `Config` made of dataclass sections (`schema`), resolved in one direction,
each layer overriding the one before (`loader`):

    dataclass defaults (the official baseline) < preset TOML < --config TOML < environment < --set

The environment map (`env`) covers the official baseline's and the record scripts' variables. Every
problem (unknown key, wrong type, impossible combination) is collected by `validate` and raised as one
`ConfigError` listing each key, its origin and the fix, before any work starts.
"""

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

__all__ = [
    "CALIBRATION_SOURCES", "ENV_VARS", "FORBIDDEN_CALIBRATION", "LORA_TARGETS", "OFFICIAL_ENV_VARS", "RECORD_ENV_VARS",
    "Config", "ConfigIssue", "ConfigIssues", "DataConfig", "EvalConfig", "ModelConfig", "OptimConfig", "QuantConfig",
    "RunConfig", "TrainConfig", "choices", "config_from_dict", "eval_context", "load_config", "parse_fit_bits",
    "parse_layer_list", "preset_names", "read_preset", "read_toml_file", "reads_train_calibration",
    "resolve_grad_accum", "tomllib", "validate",
]
