"""Pure conversions between napari layer data and sam3_core prompts (no viewer, no model)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sam3_napari.convert import (
    clicks_from_points,
    default_channels,
    exemplars_from_shapes,
    guess_channel_axis,
    image_plane,
    masks_to_labels,
    merge_labels,
    parse_channels,
    plane_index,
    plane_rgb8,
    prompt_signs,
    replace_object,
    spatial_shape,
    to_layer_coords,
)
from sam3_napari.messages import hint_first
from sam3_napari.objects import ClickedObject, click_key
from sam3_napari.sample_data import make_cells, make_stack
from sam3_napari.storage import StoreChoice


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


def test_a_small_last_axis_is_channels_and_more_than_three_default_to_the_first():
    assert guess_channel_axis((256, 256, 5), rgb=False) == 2
    assert guess_channel_axis((10, 256, 256, 2), rgb=False) == 3
    assert guess_channel_axis((5, 256, 256), rgb=False) is None  # a z-stack of 5 slices
    assert guess_channel_axis((256, 256, 3), rgb=True) is None  # napari's RGB already
    assert guess_channel_axis((256, 256), rgb=False) is None
    assert guess_channel_axis((64, 64, 40), rgb=False) is None  # 40 slices, not channels
    assert default_channels(5, None) == [0, 1, 2] and default_channels(5, [4]) == [4]
    assert default_channels(2, None) is None and default_channels(1, None) is None


def test_merge_keeps_painted_pixels_and_lifts_new_ids_above_them():
    current = np.array([[0, 1, 1], [9, 9, 0]], np.uint32)
    painted = np.array([[False, False, False], [True, True, False]])
    new = np.array([[2, 2, 0], [1, 1, 1]], np.int64)
    merged = merge_labels(current, new, painted)
    assert merged.dtype == np.uint32
    assert merged.tolist() == [[11, 11, 0], [9, 9, 10]]  # ids 1, 2 -> 10, 11 above the 9
    assert merge_labels(current, new, None).tolist() == new.tolist()
    assert merge_labels(current, new, np.zeros_like(painted)).tolist() == new.tolist()

    obj = np.array([[3, 3, 0], [3, 0, 0]], np.uint32)
    hand = np.array([[False, True, False], [False, False, False]])
    mask = np.array([[False, False, True], [False, False, True]])
    out = replace_object(obj, mask, 3, hand)
    assert out.tolist() == [[0, 3, 3], [0, 0, 3]]  # the painted pixel stays object 3


def test_the_same_clicks_start_from_the_same_mask():
    first = click_key(np.array([[10.0, 20.0]]), np.array([1]))
    two = click_key(np.array([[10.0, 20.0], [30.0, 5.0]]), np.array([1, 0]))
    three = click_key(np.array([[10.0, 20.0], [30.0, 5.0], [1.0, 1.0]]), np.array([1, 0, 1]))
    obj = ClickedObject(key="plane", obj_id=1)
    assert obj.mask_input(first) is None
    out1, out2 = np.full((4, 4), 1.0), np.full((4, 4), 2.0)
    obj.record(first, None, out1)
    assert obj.mask_input(first) is None  # a re-run: not fed its own output
    assert obj.mask_input(two) is out1  # an added click refines the last mask
    obj.record(two, out1, out2)
    assert obj.mask_input(two) is out1 and obj.mask_input(three) is out2
    other = click_key(np.array([[50.0, 50.0]]), np.array([1]))
    assert obj.mask_input(other) is None  # another first click starts afresh


def test_store_folders_beside_the_file_or_in_the_cache(tmp_path, monkeypatch):
    from sam3_napari import storage

    monkeypatch.setattr(storage, "user_cache_base", lambda: tmp_path / "cache")
    image = tmp_path / "data" / "cells.tif"
    image.parent.mkdir()
    image.write_bytes(b"")
    assert storage.store_dir(StoreChoice(source=str(image)), "abc") == (
        tmp_path / "data" / "sam3-embeddings" / "abc"
    )
    assert storage.store_dir(StoreChoice(), "abc") == tmp_path / "cache" / "abc"
    assert storage.store_dir(StoreChoice(folder=str(tmp_path / "mine")), "abc") == (
        tmp_path / "mine"
    )
    assert storage.store_dir(StoreChoice(disk=False), "abc") is None
    image.parent.chmod(0o500)  # a read-only data folder: the cache instead
    try:
        if not os.access(image.parent, os.W_OK):  # root may write anyway
            assert storage.store_dir(StoreChoice(source=str(image)), "abc").parent == (
                tmp_path / "cache"
            )
    finally:
        image.parent.chmod(0o700)


def test_long_errors_become_short_with_the_hint_first():
    text = (
        "checkpoint does not match the model:\n  1210 shape mismatches: "
        + ", ".join(f"layer{i}.weight" for i in range(300))
        + "\n  hint: the model config differs from the checkpoint's"
    )
    short = hint_first(text)
    assert short.startswith("the model config differs") and len(short) <= 360
    assert short.endswith("...")
    told = hint_first("this checkpoint fits 'sam3_tiny': leave config unset\n  details: " + text)
    assert told.startswith("this checkpoint fits 'sam3_tiny': leave config unset; the model")
