"""Helpers for the viewer tests: wait for a run, find our layers, drive the canvas with the mouse.

Mouse events are real Qt events sent to the vispy canvas widget, placed by mapping data
coordinates through the layer's transform and the 2D camera (centre, zoom) to canvas pixels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def run(qtbot, w, action) -> None:
    """Trigger a widget action and wait until its worker finished."""
    action()
    qtbot.waitUntil(lambda: w.idle, timeout=60_000)


def open_cells(viewer, w, monkeypatch) -> tuple[object, list[str], list[str]]:
    """Open the plugin's "cells" sample as the widget's image and capture the messages the
    widget shows: (image layer, info messages, error messages)."""
    from sam3_napari import runner

    infos, errors = [], []
    monkeypatch.setattr(runner, "show_info", infos.append)
    monkeypatch.setattr(runner, "show_error", errors.append)
    image = viewer.open_sample("sam3-tools", "cells")[0]
    w.reset_choices()
    w.image.value = image
    return image, infos, errors


def ours(viewer, kind: str) -> list:
    """Our Labels layers of one kind, found by metadata."""
    from sam3_napari.layers import tag_of

    return [lay for lay in viewer.layers if (tag_of(lay) or {}).get("kind") == kind]


def canvas_xy(viewer, layer, data_yx: Sequence[float]) -> tuple[float, float]:
    """Canvas pixel (x, y) showing the data point (row, col) of `layer` in a 2D view."""
    full = list(viewer.dims.point[-layer.ndim :])
    full[-2:] = data_yx
    world = np.asarray(layer.data_to_world(full), float)[-2:]
    center = np.asarray(viewer.camera.center, float)[-2:]
    native = viewer.window._qt_viewer.canvas.native
    offset = (world - center) * viewer.camera.zoom
    return native.width() / 2 + offset[1], native.height() / 2 + offset[0]


def _send(viewer, kind: str, xy: tuple[float, float], held: bool) -> None:
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    native = viewer.window._qt_viewer.canvas.native
    local = QPointF(*xy)
    types = {
        "press": QEvent.Type.MouseButtonPress,
        "move": QEvent.Type.MouseMove,
        "release": QEvent.Type.MouseButtonRelease,
    }
    left = Qt.MouseButton.LeftButton
    button = Qt.MouseButton.NoButton if kind == "move" else left
    buttons = left if held else Qt.MouseButton.NoButton
    event = QMouseEvent(
        types[kind],
        local,
        QPointF(native.mapToGlobal(local.toPoint())),
        button,
        buttons,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(native, event)
    QApplication.processEvents()


def click(viewer, layer, data_yx: Sequence[float]) -> None:
    """A left click on the canvas at a data point of `layer` (move there, press, release)."""
    xy = canvas_xy(viewer, layer, data_yx)
    _send(viewer, "move", xy, False)
    _send(viewer, "press", xy, True)
    _send(viewer, "release", xy, False)


def drag(viewer, layer, start_yx: Sequence[float], end_yx: Sequence[float], steps: int = 8):
    """Press at `start_yx`, move in steps with the button held, release at `end_yx`."""
    a = np.asarray(canvas_xy(viewer, layer, start_yx))
    b = np.asarray(canvas_xy(viewer, layer, end_yx))
    _send(viewer, "move", tuple(a), False)
    _send(viewer, "press", tuple(a), True)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        _send(viewer, "move", tuple(a + t * (b - a)), True)
    _send(viewer, "release", tuple(b), False)


def artifacts_dir() -> Path:
    """Where the viewer tests keep their screenshots ($SAM3_ARTIFACTS/napari or /tmp/...)."""
    root = os.environ.get("SAM3_ARTIFACTS")
    path = Path(root) / "napari" if root else Path("/tmp/artifacts/napari")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_screenshot(viewer, qtbot, name: str) -> Path:
    """The whole window (canvas, layer list, our dock) as a PNG in `artifacts_dir()`."""
    from PIL import Image

    qtbot.wait(200)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    path = artifacts_dir() / name
    Image.fromarray(shot[..., :3]).save(path)
    return path
