"""A user's session in a real viewer, driven with mouse events on the canvas (Xvfb).

Clicks, a second click, a box drag and a paint stroke go through napari's own mouse handling,
as a user's would: the prompt layer stays active, hand-painted pixels survive a re-run, results
of different prompts get their own layers, and a 5-channel (256, 256, 5) image is segmented as
one 256 x 256 plane. Screenshots go to $SAM3_ARTIFACTS/napari (else /tmp/artifacts/napari).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.napari.viewer_tools import click, drag, open_cells, ours, run, save_screenshot

pytestmark = pytest.mark.viewer


def wait_idle(qtbot, w) -> None:
    """Wait until no run is in flight or pending (auto-segmenting clicks)."""
    qtbot.waitUntil(lambda: w.idle, timeout=60_000)


def test_click_box_paint_rerun_like_a_user(widget, qtbot, monkeypatch):
    from qtpy import API_NAME

    assert API_NAME == "PyQt6"  # napari 0.9's backend (PyQt5 gets a deprecation toast)
    viewer, w = widget
    _, infos, errors = open_cells(viewer, w, monkeypatch)
    viewer.window._qt_window.resize(1400, 900)
    viewer.reset_view()
    qtbot.wait(200)
    w.add_prompt_layers()
    shapes, points = w.exemplars.value, w.clicks.value

    # first click: a point, then an object; the clicks layer keeps the selection and its mode
    click(viewer, points, (60, 60))
    assert len(points.data) == 1
    np.testing.assert_allclose(points.data[0], [60, 60], atol=1.5)
    wait_idle(qtbot, w)
    (objects,) = ours(viewer, "objects")
    assert viewer.layers.selection.active is points and points.mode == "add"
    first = objects.data.copy()
    assert (first == 1).any()

    # second click (negative) adds a point instead of panning, and refines object 1
    w.polarity.value = "negative"
    center = tuple(viewer.camera.center)
    click(viewer, points, (75, 80))
    assert len(points.data) == 2 and tuple(viewer.camera.center) == center
    assert points.features["positive"].tolist() == [True, False]
    wait_idle(qtbot, w)
    assert "object 1" in w.status.value and objects.data.max() == 1
    save_screenshot(viewer, qtbot, "clicks.png")

    # 'Segment object' again with the same clicks: the same mask, not its own output refined
    refined = objects.data.copy()
    run(qtbot, w, w.segment_object)
    np.testing.assert_array_equal(objects.data, refined)

    # a concept alone, then the concept with a box dragged on the canvas: two layers
    w.polarity.value, w.concept.value = "positive", "nucleus"
    run(qtbot, w, w.segment_concept)
    (concept,) = ours(viewer, "concept")
    assert concept.name == "SAM3 nucleus" and concept.data.max() >= 1
    assert viewer.layers.selection.active is points
    viewer.layers.selection.active = shapes
    shapes.mode = "add_rectangle"
    drag(viewer, shapes, (40, 40), (100, 110))
    assert len(shapes.data) == 1
    corners = np.asarray(shapes.data[0])
    np.testing.assert_allclose(corners.min(0), [40, 40], atol=2)
    np.testing.assert_allclose(corners.max(0), [100, 110], atol=2)
    run(qtbot, w, w.segment_concept)
    boxed = [lay for lay in ours(viewer, "concept") if lay is not concept]
    assert [lay.name for lay in boxed] == ["SAM3 nucleus + boxes"]
    assert viewer.layers.selection.active is shapes and shapes.mode == "add_rectangle"

    # a run is one undo step of its layer
    before = concept.data.copy()
    concept.undo()
    assert not concept.data.any()  # the first run took back: an empty layer
    concept.redo()
    np.testing.assert_array_equal(concept.data, before)

    # a paint stroke into our layer (renamed by the user) survives a re-run
    concept.name = "my nuclei"
    viewer.layers.selection.active = concept
    concept.mode, concept.brush_size, concept.selected_label = "paint", 9, 42
    drag(viewer, concept, (130, 20), (130, 120))
    stroke = concept.data == 42
    assert stroke.sum() > 300
    w.exemplars.value = None
    run(qtbot, w, w.segment_concept)
    assert not errors, errors
    assert (concept.data[stroke] == 42).all()  # the user's pixels, all of them
    assert concept.data[~stroke].max() > 42  # the new ids sit above the painted id
    assert "painted pixels were kept" in w.status.value
    save_screenshot(viewer, qtbot, "painted.png")

    # nothing above the threshold: a message and no empty layer
    n_layers = len(viewer.layers)
    w.score.value, w.concept.value = 1.0, "zebra"
    run(qtbot, w, w.segment_concept)
    assert len(viewer.layers) == n_layers and "nothing found for 'zebra'" in infos[-1]
    assert not errors, errors


def test_five_channel_image_and_changing_the_channel_axis(widget, qtbot, monkeypatch):
    from sam3_napari import runner
    from sam3_napari.sample_data import make_cells

    from sam3_core.predictor import ImagePredictor

    viewer, w = widget
    errors, seen = [], []
    monkeypatch.setattr(runner, "show_error", errors.append)
    original = ImagePredictor.set_images
    monkeypatch.setattr(
        ImagePredictor, "set_images", lambda self, ims: seen.extend(ims) or original(self, ims)
    )
    cells = make_cells(256)
    data = np.stack([np.roll(cells, 7 * c, axis=1) for c in range(5)], -1)  # (256, 256, 5)
    image = viewer.add_image(data, name="five channels")
    assert not image.rgb and image.ndim == 3  # napari shows 256 slices of 256 x 5
    w.reset_choices()
    w.image.value, w.concept.value = image, "nucleus"
    assert w.channel_axis.value == "auto"
    run(qtbot, w, w.segment_concept)
    assert not errors, errors
    assert np.asarray(seen[-1]).shape == (256, 256, 3)  # one whole plane, channels 0-2
    (layer,) = ours(viewer, "concept")
    assert layer.data.shape == (256, 256, 1) and layer.data.max() >= 1  # the image's axes
    assert "channel axis 2 (5 channels)" in w.status.value
    assert viewer.dims.displayed == (0, 1)  # the plane on screen, channels on a slider
    for c in (0, 4):  # the labels show over every channel, at the same pixels
        viewer.dims.set_point(2, c)
        viewer.cursor.position = (100, 120, c)
        assert layer.get_value(viewer.cursor.position, world=True) == layer.data[100, 120, 0]
    save_screenshot(viewer, qtbot, "five_channels.png")

    # another axis afterwards: no crash, a layer of the new shape, the old one kept
    w.channel_axis.value = None
    run(qtbot, w, w.segment_concept)
    assert not errors, errors
    shapes = sorted(lay.data.shape for lay in ours(viewer, "concept"))
    assert shapes == [(256, 256, 1), (256, 256, 5)]
    w.channel_axis.value, w.channels.value = 2, "4"
    run(qtbot, w, w.segment_concept)
    assert not errors, errors
    assert len(ours(viewer, "concept")) == 2 and np.asarray(seen[-1]).shape == (256, 256, 3)
    np.testing.assert_array_equal(seen[-1][..., 0], seen[-1][..., 2])  # one channel as gray
