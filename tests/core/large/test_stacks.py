"""Stacks: per-slice instances linked into consistent ids; end to end on the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_core.formats import images
from sam3_core.formats.bioformats import track_rows
from sam3_core.large import stacks
from sam3_core.predictor import ImagePredictor
from sam3_core.prompts import PromptError
from tests.core.helpers import make_image, tiny_model

H, W = 60, 80


def disc(cy, cx, r):
    yy, xx = np.mgrid[:H, :W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def synthetic(z=6, seed=0):
    """Two drifting discs, one appearing at slice 3, one gone after slice 3; shuffled order."""
    rng = np.random.default_rng(seed)
    truth, masks = [], []
    for k in range(z):
        objs = {1: disc(15, 10 + 3 * k, 7), 2: disc(40, 60 - 2 * k, 9)}
        if k >= 3:
            objs[3] = disc(45, 20, 6)
        if k <= 3:
            objs[4] = disc(12, 65, 5)
        order = rng.permutation(list(objs))
        truth.append(order)
        masks.append(np.stack([objs[i] for i in order]))
    return truth, masks


def test_link_slices_consistent_ids():
    truth, masks = synthetic()
    ids = stacks.link_slices(masks)
    mapping = {}
    for t, i in zip(truth, ids):
        for a, b in zip(t, i):
            assert mapping.setdefault(int(a), int(b)) == b  # one id per true object, all along
    assert len(set(mapping.values())) == 4
    volume = stacks.paint_volume(masks, ids, dtype=np.uint16)
    assert volume.shape == (6, H, W) and volume.dtype == np.uint16
    table = {int(r[0]): tuple(r[1:]) for r in track_rows(volume)}
    assert table[mapping[3]] == (3, 5, 0) and table[mapping[4]] == (0, 3, 0)
    assert table[mapping[1]] == (0, 5, 0)


def test_link_gap_labels_and_assignment():
    a = disc(30, 30, 8)
    masks = [a[None], np.zeros((0, H, W), bool), a[None], a[None]]
    assert [list(i) for i in stacks.link_slices(masks, max_gap=0)] == [[1], [], [2], [2]]
    assert [list(i) for i in stacks.link_slices(masks, max_gap=1)] == [[1], [], [1], [1]]
    two_gaps = [a[None], *[np.zeros((0, H, W), bool)] * 2, a[None]]
    assert [list(i) for i in stacks.link_slices(two_gaps, max_gap=1)] == [[1], [], [], [2]]
    assert [list(i) for i in stacks.link_slices(two_gaps, max_gap=2)] == [[1], [], [], [1]]
    labels = [np.array([0]), np.zeros(0, np.int64), np.array([1]), np.array([1])]
    assert [list(i) for i in stacks.link_slices(masks, labels, max_gap=1)] == [[1], [], [2], [2]]
    with pytest.raises(ValueError, match="max_gap"):
        stacks.link_slices(masks, max_gap=-1)
    iou = np.array([[0.9, 0.8], [0.85, 0.1]])  # greedy and optimal agree here: (0,1), (1,0)...
    pairs = stacks.assign(iou, 0.3)
    assert len(pairs) == 2 and all(iou[r, c] >= 0.3 for r, c in pairs)
    assert stacks.assign(np.array([[0.2]]), 0.3) == []


@pytest.fixture(scope="module")
def predictor():
    return ImagePredictor(tiny_model(), device="cpu")


def tiny_stack(z=4):
    base = make_image(H, W, seed=5)
    return np.stack([np.roll(base, 2 * k, axis=1) for k in range(z)])


def test_segment_stack_link_end_to_end(predictor, monkeypatch):
    stack = tiny_stack()
    calls, seen = [], []
    set_images = predictor.set_images
    monkeypatch.setattr(
        predictor, "set_images", lambda ims: calls.append(len(ims)) or set_images(ims)
    )
    res = stacks.segment_stack(
        predictor,
        stack,
        "cell",
        batch_size=3,
        score_threshold=0.0,
        progress=lambda d, n: seen.append((d, n)),
    )
    assert calls == [3, 1] and seen[-1] == (4, 4)
    assert res.labels.shape == (4, H, W) and res.labels.dtype == np.uint32
    assert res.label_names == ["cell"] and len(res.tracks) == len(res.track_labels)
    assert set(np.unique(res.labels)) - {0} == set(res.tracks[:, 0].tolist())
    same = stacks.segment_stack(
        predictor, stack.transpose(1, 2, 0, 3), "cell", axes="YXZC", score_threshold=0.0
    )
    np.testing.assert_array_equal(same.labels, res.labels)


def test_segment_stack_errors(predictor):
    with pytest.raises(PromptError, match="track"):
        stacks.segment_stack(
            predictor, tiny_stack(2), "cell", clicks={0: [{"boxes": [1, 1, 9, 9]}]}
        )
    with pytest.raises(ValueError, match="stack"):
        stacks.segment_stack(predictor, np.zeros((H, W)), "cell")
    with pytest.raises(ValueError, match="method"):
        stacks.segment_stack(predictor, tiny_stack(2), "cell", method="flow")


class CountingStack:
    """A lazy [Z, H, W] stack that records every read and refuses to be read whole."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.ndim, self.dtype = data, data.shape, data.ndim, data.dtype
        self.reads: list = []

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key):
        block = self.data[key]
        self.reads.append((key, block.size))
        return block

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole stack was read at once")


def test_segment_stack_track_reads_slice_by_slice(predictor, monkeypatch):
    """method='track' keeps the stack lazy: slices one at a time, plus one strided sample."""
    monkeypatch.setattr(images, "PERCENTILE_SAMPLES", 500)
    gray = tiny_stack(4)[..., 0].astype(np.uint16) * 100
    lazy = CountingStack(gray)
    res = stacks.segment_stack(
        predictor,
        lazy,
        clicks={1: [{"points": [[40, 30]], "point_labels": [1]}]},
        method="track",
        score_threshold=0.0,
    )
    assert res.labels.shape == (4, H, W)
    whole = [k for k, _ in lazy.reads if not isinstance(k, (int, np.integer))]
    assert len(whole) == 1 and lazy.reads[0][1] <= 2 * 500  # the intensity sample, strided
    assert all(size <= H * W for k, size in lazy.reads if isinstance(k, (int, np.integer)))


def test_stack_has_one_intensity_range(predictor, monkeypatch):
    """A dim and a bright slice keep their difference: one range for the volume, not per slice."""
    ramp = np.tile(np.linspace(0, 1, W), (H, 1))
    vol = np.stack([1000 + 500 * ramp, 1000 + 4000 * ramp]).astype(np.uint16)
    norm = stacks.normalize_stack(vol)
    lo, hi = images.intensity_range(vol)
    for z in range(2):
        np.testing.assert_array_equal(norm[z][..., 0], images.scale_to_uint8(vol[z], lo, hi))
    assert norm[0].max() < 80 and norm[1].max() == 255 and norm.shape == (2, H, W, 3)
    seen = []
    set_images = predictor.set_images
    monkeypatch.setattr(predictor, "set_images", lambda ims: seen.extend(ims) or set_images(ims))
    stacks.segment_stack(predictor, vol, "cell", score_threshold=0.0)
    assert len(seen) == 2
    for z in range(2):
        np.testing.assert_array_equal(seen[z], norm[z])  # slices go in with the volume's range


def test_segment_stack_track_propagates_a_clicked_object_with_one_id(predictor):
    """method='track': a click on slice 1 follows the object up and down the stack, one id."""
    stack = tiny_stack(5)
    res = stacks.segment_stack(
        predictor,
        stack,
        clicks={1: [{"points": [[40, 30]], "point_labels": [1]}]},
        method="track",
        score_threshold=0.0,
    )
    assert res.labels.shape == (5, H, W)
    ids_per_slice = [set(np.unique(s)) - {0} for s in res.labels]
    assert ids_per_slice[1], "the prompted slice must hold the object"
    all_ids = set().union(*ids_per_slice)
    assert len(all_ids) == 1
    assert sum(bool(s) for s in ids_per_slice) >= 3
    (track,) = res.tracks
    assert track[0] == next(iter(all_ids))
