"""bf16 predictors (CPU autocast, matmul weights stored in bf16) agree with fp32 ones."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sam3_core.large.tiling import segment_tiled
from sam3_core.predictor import ImagePredictor
from sam3_core.results import Exemplar
from sam3_core.video.association import AssociationConfig
from sam3_core.video.predictor import VideoPredictor
from tests.core.helpers import make_image, tiny_model
from tests.reference import mask_iou


@pytest.fixture(scope="module")
def pair():
    """(fp32 predictor, bf16 predictor) on two copies of one tiny model."""
    model = tiny_model(4)
    fp32 = ImagePredictor(copy.deepcopy(model), device="cpu")
    bf16 = ImagePredictor(copy.deepcopy(model), device="cpu", precision="bf16")
    return fp32, bf16


def test_bf16_stores_matmul_weights_once(pair):
    fp32, bf16 = pair
    assert fp32.model.matmul_dtype == torch.float32
    assert bf16.model.matmul_dtype == torch.bfloat16
    vit = bf16.model.detector_model.vision_encoder.backbone
    assert vit.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    assert vit.layers[0].layer_norm1.weight.dtype == torch.float32  # norms stay fp32
    assert vit.layers[0].rope.dtype == torch.complex64  # and buffers
    with pytest.raises(ValueError, match="cast to torch.bfloat16.*load a separate model"):
        ImagePredictor(bf16.model, device="cpu")


def test_bf16_concepts_and_exemplars_match_fp32(pair):
    image = make_image(seed=3)
    results = []
    for pred in pair:
        state = pred.set_image(image)
        results.append(
            pred.predict(
                state, ["cat", "red car"], [Exemplar((20, 10, 70, 60))], score_threshold=0.0
            )
        )
    a, b = results
    assert a.scores.shape == b.scores.shape and a.scores.std() > 0.01
    np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores), atol=0.02)
    best_a, best_b = np.argmax(a.scores), np.argmax(b.scores)
    assert mask_iou(a.masks[best_a], b.masks[best_b]) > 0.9


def test_bf16_clicks_and_tiles_match_fp32(pair):
    image = make_image(seed=4)
    clicks, tiles = [], []
    for pred in pair:
        state = pred.set_image(image)
        clicks.append(pred.predict(state, points=[[40, 30]], point_labels=[1]))
        tiles.append(
            segment_tiled(
                pred,
                make_image(150, 220, seed=6),
                "cat",
                tile_size=112,
                overlap=16,
                score_threshold=0.0,
            )
        )
    assert mask_iou(clicks[0].masks[0], clicks[1].masks[0]) > 0.95
    assert abs(len(tiles[0]) - len(tiles[1])) <= 1 and len(tiles[0]) > 0


def test_bf16_video_tracks_like_fp32(pair):
    base = make_image(64, 80, seed=5)
    video = np.stack([np.roll(base, t, 1) for t in range(5)])
    tracks = []
    for pred in pair:
        session = VideoPredictor(pred.model, device="cpu", precision=pred.precision).start(video)
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
        vp = VideoPredictor(pred.model, device="cpu", precision=pred.precision)
        # thresholds lowered for the random detector's low scores
        session = vp.start(video, association=AssociationConfig(0.1, new_det_thresh=0.15))
        session.add_concept(0, concepts="blob")
        ids.append([sorted(inst.track_ids.tolist()) for _, inst in session.propagate()])
    assert ids[0] == ids[1] and any(ids[0])
