"""Session fixtures shared by every test folder."""

from __future__ import annotations

import pytest

from pgolf.data.build import DatasetPaths
from testkit import build_small_dataset


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> DatasetPaths:
    return build_small_dataset(tmp_path_factory.mktemp("small_dataset"))
