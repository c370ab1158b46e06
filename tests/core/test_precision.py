"""bf16 predictors (autocast, matmul weights stored in bf16) agree with fp32 ones.

Both run on `tests.device.DEVICE` (`SAM3_TEST_DEVICE`, default cpu): CPU autocast on the CPU,
CUDA autocast on a GPU. The tolerances are bf16's, not a device's: bf16 keeps 8 significant
bits (relative rounding up to 2^-8), so scores move by up to ~1e-2 (atol 0.02) and masks by a few
edge pixels (IoU > 0.9 for concepts, > 0.95 for a click); tracked masks drift more as the
rounding compounds through the memory (IoU > 0.8). CUDA autocast sends a few more ops to bf16
than CPU autocast does (its op lists differ): expected within these bounds, not yet run on a GPU.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sam3_core.large.tiling import segment_tiled
from sam3_core.predictor import ImagePredictor
from sam3_core.results import Exemplar, Instances
from sam3_core.video.association import AssociationConfig
from sam3_core.video.predictor import VideoPredictor
from tests.core.helpers import make_image, tiny_model
from tests.device import DEVICE
from tests.reference import mask_iou

SCORE_ATOL = 0.02  # bf16 moves scores by ~1e-2 (measured 6e-3 on the CPU)
CONCEPT_IOU = 0.9  # the best instance's mask (measured 0.98)
CLICK_IOU = 0.95  # a click's mask (measured 0.999)
CONCEPTS, EXEMPLARS = ["cat", "red car"], [Exemplar((20, 10, 70, 60))]
CONCEPT_IMAGE_SEED = 3  # `make_image(seed=...)` of the concept prompts


def concept_result(pred: ImagePredictor) -> Instances:
    """Every query's instance (threshold 0) of CONCEPTS, each joined with EXEMPLARS."""
    state = pred.set_image(make_image(seed=CONCEPT_IMAGE_SEED))
    return pred.predict(state, CONCEPTS, EXEMPLARS, score_threshold=0.0)


def click_result(pred: ImagePredictor) -> Instances:
    """One positive click's mask."""
    state = pred.set_image(make_image(seed=4))
    return pred.predict(state, points=[[40, 30]], point_labels=[1])


def assert_concepts_agree(ref: Instances, low: Instances) -> None:
    """A low-precision `concept_result` agrees with the fp32 one `ref` within the bf16 bounds
    above; `ref`'s scores vary, so a wrong model cannot pass."""
    assert ref.scores.shape == low.scores.shape and ref.scores.std() > 0.01
    np.testing.assert_allclose(np.sort(ref.scores), np.sort(low.scores), atol=SCORE_ATOL)
    best_ref, best_low = np.argmax(ref.scores), np.argmax(low.scores)
    assert mask_iou(ref.masks[best_ref], low.masks[best_low]) > CONCEPT_IOU


def assert_clicks_agree(ref: Instances, low: Instances) -> None:
    """A low-precision `click_result` agrees with the fp32 one `ref`."""
    assert mask_iou(ref.masks[0], low.masks[0]) > CLICK_IOU


@pytest.fixture(scope="module")
def pair():
    """(fp32 predictor, bf16 predictor) on two copies of one tiny model, on DEVICE."""
    model = tiny_model(4)
    fp32 = ImagePredictor(copy.deepcopy(model), device=DEVICE)
    bf16 = ImagePredictor(copy.deepcopy(model), device=DEVICE, precision="bf16")
    return fp32, bf16


def test_bf16_stores_matmul_weights_once(pair):
    fp32, bf16 = pair
    assert fp32.model.matmul_dtype == torch.float32
    assert bf16.model.matmul_dtype == torch.bfloat16
    vit = bf16.model.detector_model.vision_encoder.backbone
    assert vit.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert vit.layers[0].mlp.fc1.weight.device.type == DEVICE.type
    assert vit.layers[0].layer_norm1.weight.dtype == torch.float32  # norms stay fp32
    assert vit.layers[0].rope.dtype == torch.complex64  # and buffers
    with pytest.raises(ValueError, match="cast to torch.bfloat16.*load a separate model"):
        ImagePredictor(bf16.model, device=DEVICE)


def test_bf16_concepts_and_exemplars_match_fp32(pair):
    assert_concepts_agree(*(concept_result(pred) for pred in pair))


def test_bf16_clicks_and_tiles_match_fp32(pair):
    assert_clicks_agree(*(click_result(pred) for pred in pair))
    tiles = [
        segment_tiled(
            pred,
            make_image(150, 220, seed=6),
            "cat",
            tile_size=112,
            overlap=16,
            score_threshold=0.0,
        )
        for pred in pair
    ]
    assert abs(len(tiles[0]) - len(tiles[1])) <= 1 and len(tiles[0]) > 0


def test_bf16_video_tracks_like_fp32(pair):
    base = make_image(64, 80, seed=5)
    video = np.stack([np.roll(base, t, 1) for t in range(5)])
    tracks = []
    for pred in pair:
        session = VideoPredictor.from_image_predictor(pred).start(video)
        session.add_prompt(0, obj_id=7, points=[[30, 30]], point_labels=[1])
        tracks.append([inst for _, inst in session.propagate()])
    for a, b in zip(*tracks):
        assert list(a.track_ids) == list(b.track_ids) == [7]
        assert mask_iou(a.masks[0], b.masks[0]) > 0.8  # bf16 rounding compounds through memory


def test_bf16_concept_tracking_runs_like_fp32(pair):
    base = make_image(64, 80, seed=8)
    video = np.stack([np.roll(base, t, 1) for t in range(4)])
    ids = []
    for pred in pair:
        vp = VideoPredictor.from_image_predictor(pred)
        # thresholds lowered for the random detector's low scores
        session = vp.start(video, association=AssociationConfig(0.1, new_det_thresh=0.15))
        session.add_concept(0, concepts="blob")
        ids.append([sorted(inst.track_ids.tolist()) for _, inst in session.propagate()])
    assert ids[0] == ids[1] and any(ids[0])
