"""Hand edits and undo on a napari Labels layer (no viewer, no model)."""

from __future__ import annotations

import numpy as np
import pytest

layers = pytest.importorskip("napari.layers", reason="napari: pip install -e '.[napari]'")


def our_layer(shape, channel_axis=None):
    from sam3_napari.edits import OWNER, track_edits

    tag = {"kind": "concept", "prompt": "x", "channel_axis": channel_axis, "shape": shape}
    layer = layers.Labels(np.zeros(shape, np.uint32), metadata={OWNER: tag})
    track_edits(layer)
    return layer


def test_painted_pixels_survive_and_runs_undo():
    from sam3_napari.edits import painted, write_labels

    layer = our_layer((20, 20))
    first = np.zeros((20, 20), np.uint32)
    first[2:8, 2:8] = 1
    write_labels(layer, (), first)
    assert painted(layer) is None  # our own write is not a hand edit
    layer.paint((15, 15), 7)  # a user's brush stroke (napari's paint, with history)
    stroke = layer.data == 7
    assert stroke.any() and painted(layer)[stroke].all()

    second = np.ones((20, 20), np.uint32)
    write_labels(layer, (), second)
    assert (layer.data[stroke] == 7).all() and (layer.data[~stroke] == 8).all()
    layer.undo()  # the second run taken back, the stroke kept
    assert (layer.data[stroke] == 7).all() and (layer.data[~stroke] == first[~stroke]).all()


def test_a_huge_run_is_written_without_history(monkeypatch):
    from sam3_napari import edits

    monkeypatch.setattr(edits, "UNDO_MAX_PIXELS", 10)
    layer = our_layer((20, 20))
    edits.write_labels(layer, (), np.ones((20, 20), np.uint32))
    assert (layer.data == 1).all()
    layer.undo()  # nothing recorded: still there
    assert (layer.data == 1).all()


def test_labels_of_a_channel_image_keep_its_axes():
    from sam3_napari.convert import labels_geometry
    from sam3_napari.edits import write_labels, write_object

    shape, scale, translate = labels_geometry((30, 40, 5), (1, 1, 2), (0, 0, 0), False, 2)
    assert shape == (30, 40, 1)
    assert scale.tolist() == [1, 1, 10] and translate.tolist() == [0, 0, 4]  # spans 5 channels
    layer = our_layer(shape, channel_axis=2)
    plane = np.zeros((30, 40), np.uint32)
    plane[5:10, 5:10] = 3
    write_labels(layer, (), plane)
    np.testing.assert_array_equal(layer.data[..., 0], plane)
    mask = np.zeros((30, 40), bool)
    mask[20:25, 20:25] = True
    write_object(layer, (), mask, 3)
    assert (layer.data[20:25, 20:25, 0] == 3).all() and not layer.data[5:10, 5:10, 0].any()
