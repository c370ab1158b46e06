"""Pure conversions between napari layer data and sam3_core prompts (no viewer, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from sam3_napari.convert import (
    clicks_from_points,
    exemplars_from_shapes,
    image_plane,
    masks_to_labels,
    parse_channels,
    plane_index,
    plane_rgb8,
    prompt_signs,
    spatial_shape,
    to_layer_coords,
)
from sam3_napari.sample_data import make_cells, make_stack


def test_planes_of_gray_rgb_and_channel_axis_become_rgb8():
    stack16 = np.random.default_rng(0).integers(0, 4096, (3, 20, 30)).astype(np.uint16)
    plane = image_plane(stack16, rgb=False, index=(1,))
    assert plane.shape == (20, 30)
    rgb = plane_rgb8(plane)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8 and rgb.max() == 255
    multi = np.random.default_rng(1).random((4, 2, 20, 30)).astype(np.float32)  # Z, C, Y, X
    two = image_plane(multi, rgb=False, index=(3,), channel_axis=1)
    assert two.shape == (20, 30, 2)
    out = plane_rgb8(two, parse_channels("1, 0"))
    assert out.shape == (20, 30, 3) and not out[..., 2].any()
    assert image_plane(np.zeros((20, 30, 3), np.uint8), rgb=True, index=()).shape == (20, 30, 3)
    assert spatial_shape((4, 2, 20, 30), rgb=False, channel_axis=1) == (4, 20, 30)
    assert spatial_shape((5, 20, 30, 3), rgb=True) == (5, 20, 30)
    with pytest.raises(ValueError, match="outside"):
        image_plane(stack16, rgb=False, index=(3,))
    with pytest.raises(ValueError, match="channel numbers"):
        parse_channels("red")


def test_plane_index_uses_scale_and_translate():
    assert plane_index([4.0, 10.0, 10.0], [2.0, 1.0, 1.0], [0.0, 0.0, 0.0], 1) == (2,)
    assert plane_index([7.0, 3.0, 10.0, 10.0], [1, 1, 1, 1], [0, 1, 0, 0], 2) == (7, 2)
    assert plane_index([1.0, 2.0], [1, 1], [0, 0], 0) == ()


def test_prompts_from_points_and_shapes_keep_polarity_and_plane():
    signs = prompt_signs({"positive": [True, "negative", 0, np.nan]}, 4)
    assert signs.tolist() == [True, False, False, True]
    assert prompt_signs(None, 2).tolist() == [True, True]
    pts = np.array([[0, 5.0, 7.0], [1, 6.0, 8.0], [1, 2.0, 3.0]])  # z, y, x
    xy, labels = clicks_from_points(pts, np.array([True, True, False]), index=(1,))
    assert xy.tolist() == [[8.0, 6.0], [3.0, 2.0]] and labels.tolist() == [1, 0]
    rect = np.array([[2, 10, 20], [2, 10, 40], [2, 30, 40], [2, 30, 20]], float)
    ex = exemplars_from_shapes([rect, rect], np.array([True, False]), index=(2,))
    assert [(e.box, e.positive) for e in ex] == [
        ((20, 10, 40, 30), True),
        ((20, 10, 40, 30), False),
    ]
    assert exemplars_from_shapes([rect], np.array([True]), index=(0,)) == []
    flat = exemplars_from_shapes([rect[:, 1:]], np.array([True]), index=(5,))  # 2D layer: any plane
    assert len(flat) == 1
    moved = to_layer_coords(np.array([[4.0, 4.0]]), [2, 2], [1, 1], [1, 1], [0, 0])
    assert moved.tolist() == [[9.0, 9.0]]


def test_masks_to_labels_paints_best_on_top():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2] = True
    masks[1, 1:3] = True
    labels = masks_to_labels(masks, np.array([0.9, 0.3]))
    assert labels.dtype == np.uint32
    assert labels[1].tolist() == [1, 1, 1, 1] and labels[2].tolist() == [2, 2, 2, 2]
    assert masks_to_labels(np.zeros((0, 3, 3), bool), np.zeros(0)).shape == (3, 3)


def test_sample_data_is_16bit():
    assert make_cells().dtype == np.uint16 and make_cells().shape == (256, 256)
    assert make_stack().shape == (8, 128, 128)
