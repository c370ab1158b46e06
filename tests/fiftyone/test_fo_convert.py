"""Pure conversions between FiftyOne labels and sam3_core prompts/results."""

from __future__ import annotations

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")

from sam3_core import Concept, Exemplar, Instances
from tests.fiftyone.helpers import load_plugin_module

convert = load_plugin_module("convert")


def _instances(track_ids=None) -> Instances:
    masks = np.zeros((3, 20, 40), bool)
    masks[0, 2:6, 10:30] = True  # rows 2..5, cols 10..29
    masks[2, 10:20, 0:5] = True
    boxes = np.array([[10, 2, 30, 6], [-5, 0, 50, 25], [0, 10, 5, 20]], np.float32)
    return Instances(
        masks=masks,
        boxes=boxes,
        scores=np.array([0.9, 0.8, 0.7], np.float32),
        labels=np.array([0, 1, 1]),
        label_names=["cat", "exemplar"],
        low_res_logits=np.zeros((3, 4, 4), np.float32),
        track_ids=track_ids,
    )


def test_instances_to_detections_masks_cropped_at_native_size():
    dets = convert.instances_to_detections(_instances(), "masks", ["cat", "dog"])
    assert [d.label for d in dets.detections] == ["cat", "dog"]  # empty mask dropped
    first = dets.detections[0]
    assert first.confidence == pytest.approx(0.9)
    assert first.bounding_box == pytest.approx([10 / 40, 2 / 20, 20 / 40, 4 / 20])
    assert first.mask.shape == (4, 20) and first.mask.all()
    ref = fo.Detection.from_mask(_instances().masks[0])
    assert ref.bounding_box == pytest.approx(first.bounding_box)


def test_instances_to_detections_boxes_clipped_with_track_ids():
    dets = convert.instances_to_detections(_instances(np.array([7, 8, 9])), "boxes")
    assert [d.index for d in dets.detections] == [7, 8, 9]
    assert dets.detections[1].bounding_box == pytest.approx([0, 0, 1, 1])
    assert dets.detections[0].mask is None
    with pytest.raises(ValueError, match="masks' or 'boxes"):
        convert.instances_to_detections(_instances(), "polygons")


def test_split_exemplars_and_build_concepts():
    dets = fo.Detections(
        detections=[
            fo.Detection(label="cat", bounding_box=[0.1, 0.2, 0.5, 0.5]),
            fo.Detection(label="dog", bounding_box=[0.0, 0.0, 0.1, 0.1]),
            fo.Detection(label="bad", bounding_box=[0.5, 0.5, 0.2, 0.2]),
            fo.Detection(label="cat", bounding_box=[0.6, 0.6, 0.2, 0.2], tags=["neg"]),
            fo.Detection(label="empty", bounding_box=[0.5, 0.5, 0.0, 0.2]),
        ]
    )
    pos, neg = convert.split_exemplars(dets, 200, 100, negative_label="bad", negative_tag="neg")
    assert pos == [("cat", (20.0, 20.0, 120.0, 70.0)), ("dog", (0.0, 0.0, 20.0, 10.0))]
    assert neg == [(100.0, 50.0, 140.0, 70.0), (120.0, 60.0, 160.0, 80.0)]
    only, _ = convert.split_exemplars(dets, 200, 100, only_ids=[dets.detections[1].id])
    assert [label for label, _ in only] == ["dog"]

    concepts, names = convert.build_concepts(["cat", "bird"], pos, neg[:1])
    assert names == ["cat", "bird", "dog"]
    n = Exemplar((100.0, 50.0, 140.0, 70.0), False)
    assert concepts[0] == Concept("cat", (Exemplar((20.0, 20.0, 120.0, 70.0)), n))
    assert concepts[1] == Concept("bird", (n,))
    assert concepts[2] == Concept(None, (Exemplar((0.0, 0.0, 20.0, 10.0)), n))
    joined, names = convert.build_concepts(["thing"], pos, join_all=True)
    assert names == ["thing"] and len(joined[0].exemplars) == 2


def test_keypoints_to_clicks():
    kps = fo.Keypoints(
        keypoints=[
            fo.Keypoint(label="a", points=[[0.5, 0.5], [float("nan"), 0.1], [0.1, 0.2]]),
            fo.Keypoint(label="b", points=[[0.25, 0.75], [0.5, 0.5]], sam_labels=[1, 0]),
            fo.Keypoint(label="c", points=[[float("nan"), float("nan")]]),
        ]
    )
    clicks = convert.keypoints_to_clicks(kps, 100, 40)
    assert [c[2] for c in clicks] == ["a", "b"]
    np.testing.assert_allclose(clicks[0][0], [[50, 20], [10, 8]])
    np.testing.assert_array_equal(clicks[0][1], [1, 1])
    np.testing.assert_array_equal(clicks[1][1], [1, 0])
    bad = fo.Keypoints(keypoints=[fo.Keypoint(points=[[0.1, 0.1]], sam_labels=[1, 0])])
    with pytest.raises(ValueError, match="one label"):
        convert.keypoints_to_clicks(bad, 10, 10)
