"""Interactive segmentation through ImagePredictor: clicks, boxes, masks on the cached embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_core import ImagePredictor
from sam3_core.config import sam3_tiny
from sam3_core.predictor import preprocess
from sam3_core.prompts import PromptError
from tests.core.helpers import make_image, tiny_model
from tests.reference import hf_image_tracker

transformers = pytest.importorskip("transformers")
CFG = sam3_tiny()


@pytest.fixture(scope="module")
def setup():
    model = tiny_model(seed=2)
    pred = ImagePredictor(model, device="cpu")
    return pred, hf_image_tracker(model)


def _hf_logits(hf, image, points=None, labels=None, boxes=None, multimask=True):
    h, w = image.shape[:2]
    s = CFG.image_size
    pixels = ((preprocess(image, s).float() / 255 - 0.5) / 0.5)[None]
    kw = {}
    if points is not None:
        kw["input_points"] = torch.tensor(points, dtype=torch.float32)[None] * torch.tensor(
            [s / w, s / h]
        )
        kw["input_labels"] = torch.tensor(labels)[None]
    if boxes is not None:
        kw["input_boxes"] = torch.tensor(boxes, dtype=torch.float32)[None] * torch.tensor(
            [s / w, s / h] * 2
        )
    with torch.no_grad():
        out = hf(pixel_values=pixels, multimask_output=multimask, **kw)
    best = out.iou_scores[0].argmax(-1)
    rows = torch.arange(len(best))
    return out.pred_masks[0][rows, best].numpy(), out.iou_scores[0][rows, best].numpy()


def test_parity_click_and_box_against_transformers_tracker(setup):
    pred, hf = setup
    image = make_image(90, 130, seed=3)
    state = pred.set_image(image)
    pts, lbl = [[[40, 30], [90, 60]]], [[1, 0]]
    ours = pred.predict(state, points=pts, point_labels=lbl)
    ref, ref_iou = _hf_logits(hf, image, points=pts, labels=lbl)
    assert np.abs(ours.low_res_logits - ref).max() < 1e-3
    np.testing.assert_allclose(ours.scores, ref_iou, atol=1e-5)
    box = [[20, 10, 100, 80]]
    ours = pred.predict(state, boxes=box, multimask=False)
    ref, _ = _hf_logits(hf, image, boxes=box, multimask=False)
    assert np.abs(ours.low_res_logits - ref).max() < 1e-3


def test_click_reuses_the_image_embedding(setup):
    pred, _ = setup
    calls = []
    hook = pred.model.detector_model.vision_encoder.register_forward_hook(
        lambda *a: calls.append(1)
    )
    try:
        state = pred.set_image(make_image(seed=4))
        for x in (10, 40, 80):
            res = pred.predict(state, points=[[x, 30]], point_labels=[1])
            assert res.masks.shape == (1, 97, 150)
    finally:
        hook.remove()
    assert len(calls) == 1


def test_public_steps_work_outside_inference_mode(setup):
    # Users and hosts call these directly; before, tracker_features and detect_concepts raised
    # "Inference tensors cannot be saved for backward" and encode_texts cached autograd graphs.
    from sam3_core.prompts import normalize_concepts

    pred, _ = setup
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    state = pred.set_image(make_image(seed=7))
    feats = pred.tracker_features(state)
    assert pred.tracker_features(state) is feats  # computed once per image
    text, valid = pred.encode_texts(["cell"])
    assert not text.requires_grad and text.shape[0] == 1 and valid.shape == text.shape[:2]
    out = pred.detect_concepts(state, normalize_concepts("cell", None, state.size))
    assert not out.scores.requires_grad and out.scores.shape == (1, CFG.detr_decoder.num_queries)
    click = pred.predict(state, points=[[40, 30]], point_labels=[1])
    assert click.masks.any()


def test_several_objects_in_one_call_equal_separate_calls(setup):
    pred, _ = setup
    state = pred.set_image(make_image(seed=5))
    boxes = np.array([[10, 10, 60, 50], [70, 30, 140, 90]], np.float32)
    both = pred.predict(state, boxes=boxes)
    for i in range(2):
        one = pred.predict(state, boxes=boxes[i])
        np.testing.assert_allclose(both.low_res_logits[i], one.low_res_logits[0], atol=1e-4)
    assert len(both) == 2 and both.masks.shape == (2, 97, 150)


def test_refine_a_concept_instance_with_clicks(setup):
    pred, _ = setup
    state = pred.set_image(make_image(seed=6))
    found = pred.predict(state, "cell", score_threshold=0.0)
    refined = pred.refine(state, found, 0, points=[[30, 30], [100, 60]], point_labels=[1, 0])
    assert len(refined) == 1 and refined.masks.shape == (1, 97, 150)
    other = pred.refine(state, found, 0, points=[[100, 60]], point_labels=[1])
    assert np.abs(refined.low_res_logits - other.low_res_logits).max() > 1e-2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points": [[500, 10]], "point_labels": [1]}, "outside"),
        ({"points": [[5, 10], [6, 7]], "point_labels": [1]}, "differ in length"),
        ({"points": [[5, 10]]}, "together"),
        ({"boxes": [[50, 10, 20, 40]]}, "inverted"),
        ({"points": np.zeros((0, 2)), "point_labels": []}, "empty"),
        ({"points": [[5, 10]], "point_labels": [1], "concepts": "cat"}, "not both"),
    ],
)
def test_bad_interactive_prompts(setup, kwargs, match):
    pred, _ = setup
    state = pred.set_image(make_image())
    with pytest.raises(PromptError, match=match):
        pred.predict(state, **kwargs)


def test_masks_to_boxes_matches_numpy():
    from sam3_core.postprocess import mask_to_box, masks_to_boxes

    rng = np.random.default_rng(0)
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 5:9, 10:30] = True
    masks[1][rng.random((40, 50)) > 0.97] = True
    got = masks_to_boxes(torch.from_numpy(masks)).numpy()
    for m, b in zip(masks, got):
        np.testing.assert_array_equal(b, mask_to_box(m))
    # transposed (non-contiguous) and 0/1 float masks give the same boxes as numpy
    flipped = torch.from_numpy(masks).transpose(1, 2)
    for given in (flipped, flipped.float()):
        got = masks_to_boxes(given).numpy()
        for m, b in zip(masks.transpose(0, 2, 1), got):
            np.testing.assert_array_equal(b, mask_to_box(m))
