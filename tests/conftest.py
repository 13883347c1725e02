"""Shared test configuration: records which notebooks nbval collected (see test_notebook_conventions)."""
from __future__ import annotations

from pathlib import Path

import pytest

COLLECTED_NOTEBOOKS = pytest.StashKey[set]()


def pytest_collection_modifyitems(session, config, items):
    config.stash[COLLECTED_NOTEBOOKS] = {
        Path(str(item.path)).resolve() for item in items if str(item.path).endswith(".ipynb")
    }
