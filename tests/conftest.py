"""Shared fixtures: tiny random-weight models; full-size tests are opt-in (SAM3_SLOW=1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("SAM3_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="full-size test: set SAM3_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
