"""Fixtures shared by the parity files of the records with a registered format: each file names its `PRESET`."""

from __future__ import annotations

import types

import pytest
from recordkit import import_format_record

from pgolf.config import Config, load_config


@pytest.fixture(scope="module")
def rec(request: pytest.FixtureRequest) -> types.ModuleType:
    """The record script of the file's `PRESET`, imported under its run's environment."""
    return import_format_record(request.module.PRESET)


@pytest.fixture(scope="module")
def cfg(request: pytest.FixtureRequest) -> Config:
    return load_config(request.module.PRESET, env={})
