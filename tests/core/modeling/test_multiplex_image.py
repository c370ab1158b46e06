"""SAM 3.1 on images: concepts, exemplars and clicks through the same `ImagePredictor` API,
from a tiny `sam3.1_multiplex.pt` (Meta's layout) loaded without a config.

SAM 3.1 keeps SAM 3's image path (detector; interactive head = SAM 3's click tracker on its own
neck, its IoU head without a sigmoid), so a SAM 3 model given the same weights must answer
the same; the 3.1-only modules (propagation neck, multiplex tracker) must not be used.
Both predictors run on `tests.device.DEVICE` (SAM3_TEST_DEVICE, default cpu). The answers are
compared exactly on every device: both models run the same kernels on the same inputs there,
and those kernels are deterministic for a given shape (no racing atomic sums), so on
CUDA too the two agree to the bit.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sam3_core import ImagePredictor
from sam3_core.build import build_model, load_model
from sam3_core.config import sam3_tiny
from tests.core.helpers import make_image
from tests.core.weights.official_multiplex_layout import (
    tiny_multiplex_model,
    to_official_multiplex_layout,
)
from tests.device import DEVICE


@pytest.fixture(scope="module")
def sam31(tmp_path_factory):
    """A perturbed tiny SAM 3.1 model, saved as Meta's `sam3.1_multiplex.pt`, and loaded back."""
    model = tiny_multiplex_model(seed=7)
    path = tmp_path_factory.mktemp("sam31") / "sam3.1_multiplex.pt"
    torch.save(to_official_multiplex_layout(model.state_dict()), path)
    return load_model(path)


@pytest.fixture(scope="module")
def sam3_twin(sam31):
    """A tiny SAM 3 model holding the 3.1 model's detector and interactive-head weights."""
    torch.manual_seed(0)
    twin = build_model(sam3_tiny())
    ours = sam31.state_dict()
    shared = {k: v for k, v in ours.items() if k in twin.state_dict()}
    assert len(shared) == 479 and not [k for k in shared if "multiplex" in k]
    twin.load_state_dict(shared, strict=False)
    return twin


def _answers(model, image):
    pred = ImagePredictor(model, device=DEVICE)
    state = pred.set_image(image)
    return {
        "cell": pred.predict(state, "cell", score_threshold=0.0),
        "dog": pred.predict(state, "dog", score_threshold=0.0),
        "exemplar": pred.predict(state, exemplars=[(20, 15, 70, 60)], score_threshold=0.0),
        "click": pred.predict(state, points=[[30, 40]], point_labels=[1]),
        "clicks": pred.predict(state, points=[[[30, 40]], [[110, 70]]], point_labels=[[1], [1]]),
        "box": pred.predict(state, boxes=[10, 10, 80, 60]),
    }


@pytest.fixture(scope="module")
def answers(sam31, sam3_twin):
    image = make_image(seed=11)
    return _answers(sam31, image), _answers(sam3_twin, image)


def test_sam31_checkpoint_segments_concepts_exemplars_and_clicks(answers):
    got, _ = answers
    for name, result in got.items():
        assert result.masks.shape[1:] == (97, 150), name
        assert np.isfinite(result.scores).all(), name
    # The answers depend on the prompt (weights are perturbed, so a constant model fails).
    assert not np.allclose(got["cell"].scores, got["dog"].scores)
    assert not np.allclose(got["cell"].scores, got["exemplar"].scores)
    assert got["clicks"].masks.shape[0] == 2
    assert (got["clicks"].masks[0] != got["clicks"].masks[1]).any()


@pytest.mark.parametrize("name", ["cell", "dog", "exemplar"])
def test_sam31_detector_answers_like_sam3_with_the_same_weights(answers, name):
    got, ref = answers
    np.testing.assert_array_equal(got[name].scores, ref[name].scores)
    np.testing.assert_array_equal(got[name].masks, ref[name].masks)
    np.testing.assert_array_equal(got[name].boxes, ref[name].boxes)


@pytest.mark.parametrize("name", ["click", "clicks", "box"])
def test_sam31_clicks_use_the_interactive_head_like_sam3_tracker(answers, name):
    got, ref = answers
    np.testing.assert_array_equal(got[name].masks, ref[name].masks)
    # 3.1's IoU head regresses the IoU directly; SAM 3's passes it through a sigmoid.
    sigmoid = 1 / (1 + np.exp(-got[name].scores.astype(np.float64)))
    np.testing.assert_allclose(sigmoid, ref[name].scores, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got[name].scores, ref[name].scores)


def test_sam31_image_path_never_reads_the_multiplex_modules(sam31, answers):
    blind = copy.deepcopy(sam31)
    with torch.no_grad():
        for p in (*blind.multiplex_tracker.parameters(), *blind.propagation_neck.parameters()):
            p.fill_(float("nan"))
    after = _answers(blind, make_image(seed=11))
    for name, result in answers[0].items():
        np.testing.assert_array_equal(result.masks, after[name].masks)
        np.testing.assert_array_equal(result.scores, after[name].scores)
