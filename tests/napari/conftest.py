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

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugins" / "napari"
MANIFEST = PLUGIN_DIR / "sam3_napari" / "napari.yaml"
if str(PLUGIN_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGIN_DIR))


def viewer_skip_reason() -> str | None:
    """Why a real napari viewer cannot run here, or None."""
    for module, extra in (
        ("napari", "napari==0.9.2"),
        ("pytestqt", "pytest-qt"),
        ("PyQt6", "napari[pyqt6]"),
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


@pytest.fixture
def widget(make_napari_viewer, npe2pm, tiny_checkpoint, tmp_path, monkeypatch):
    """A shown viewer with our plugin registered and its dock widget open, on the tiny model;
    the user cache (automatic embedding stores) in a temporary folder."""
    from npe2 import PluginManifest
    from sam3_napari import storage

    cache = tmp_path / "cache" / "embeddings"  # not XDG_CACHE_HOME: napari keeps its icons there
    monkeypatch.setattr(storage, "user_cache_base", lambda: cache)

    npe2pm.register(PluginManifest.from_file(MANIFEST))
    viewer = make_napari_viewer(show=True)
    _, w = viewer.window.add_plugin_dock_widget("sam3-tools", "SAM 3 segmentation")
    w.checkpoint.value, w.device.value = tiny_checkpoint, "cpu"  # config: auto (inferred)
    w.score.value = 0.0  # random tiny weights: keep every query so layers are never empty
    return viewer, w
