"""napari tests: the plugin package on sys.path, a tiny checkpoint, and clean skips.

A display comes from pytest-xvfb (in the `napari` extra: it starts Xvfb for the session when
the `xvfb` Debian package is installed), or from the caller (`xvfb-run -a`, a desktop).
Without napari, pytest-qt or a display, the viewer tests skip with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "napari"
if str(PLUGIN_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGIN_DIR))


def viewer_skip_reason() -> str | None:
    """Why a real napari viewer cannot run here, or None."""
    for module, extra in (
        ("napari", "napari==0.9.2"),
        ("pytestqt", "pytest-qt"),
        ("PyQt5", "PyQt5"),
    ):
        if importlib.util.find_spec(module) is None:
            return f"{extra} is not installed: pip install -e '.[napari]'"
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display: apt-get install xvfb (pytest-xvfb then starts it) or use xvfb-run -a"
    return None


def pytest_collection_modifyitems(config, items):
    reason = viewer_skip_reason()
    if reason is None:
        return
    for item in items:
        if "viewer" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config):
    config.addinivalue_line("markers", "viewer: needs napari, Qt and a display")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """A tiny SAM 3 checkpoint (random perturbed weights) saved as safetensors."""

    from tests.core.helpers import save_checkpoint, tiny_model

    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(tiny_model(), path)
    return str(path)
