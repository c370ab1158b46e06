"""fp16/bf16 storage: half the bytes, outputs within the tolerance stated in the README.

Measured on the tiny model with perturbed weights (3 seeds x 4 images x 4 concepts, 36 click
sets), worst case against fp32 storage: fp16 |d score| 1.9e-4, |d box| 5e-4 of the image
side, mask IoU (288 grid) >= 0.996, click IoU >= 0.996; bf16 1.2e-3, 1.6e-3 of the side,
>= 0.987, >= 0.987. The bounds below leave room for other CPUs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam3_core import ImagePredictor
from sam3_core.prompts import normalize_concepts
from sam3_core.store import EmbeddingStore
from tests.core.helpers import make_image, tiny_model

TOLERANCE = {  # dtype: (|d score|, |d box| / image side, min mask IoU)
    "fp16": (1e-3, 2e-3, 0.99),
    "bf16": (5e-3, 5e-3, 0.97),
}
CONCEPTS = ["red car", "a dog", "tree"]


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_half_precision_storage_within_tolerance(model, tmp_path, dtype):
    d_score, d_box, min_iou = TOLERANCE[dtype]
    plain = ImagePredictor(model, device="cpu")
    pred = ImagePredictor(model, device="cpu", store=EmbeddingStore(tmp_path, dtype=dtype))
    worst = {"score": 0.0, "box": 0.0, "iou": 1.0}
    for seed in (11, 12):
        image = make_image(97, 150, seed=seed)
        h, w = image.shape[:2]
        a_state, b_state = plain.set_image(image), pred.set_image(image)
        batch = normalize_concepts(CONCEPTS, None, (h, w))
        a, b = plain.detect_concepts(a_state, batch), pred.detect_concepts(b_state, batch)
        worst["score"] = max(worst["score"], (a.scores - b.scores).abs().max().item())
        worst["box"] = max(worst["box"], (a.boxes - b.boxes).abs().max().item())
        for ma, mb in zip((a.masks > 0).flatten(0, 1), (b.masks > 0).flatten(0, 1)):
            if ma.sum() > 50:
                worst["iou"] = min(worst["iou"], iou(ma, mb))
        for pts in ([[30, 40], [100, 70]], [[120, 20], [50, 80]]):
            x = plain.predict(a_state, points=pts, point_labels=[1, 0])
            y = pred.predict(b_state, points=pts, point_labels=[1, 0])
            worst["score"] = max(worst["score"], float(np.abs(x.scores - y.scores).max()))
            lx, ly = torch.from_numpy(x.low_res_logits > 0), torch.from_numpy(y.low_res_logits > 0)
            worst["iou"] = min(worst["iou"], iou(lx, ly))
    assert worst["score"] <= d_score, worst
    assert worst["box"] <= d_box, worst  # boxes are normalised: a fraction of the side
    assert worst["iou"] >= min_iou, worst
    assert worst["score"] > 0.0  # the storage dtype really rounds


def test_half_precision_halves_the_bytes(model, tmp_path):
    image = make_image(97, 150, seed=3)
    sizes = {}
    for dtype in ("fp32", "fp16", "bf16"):
        pred = ImagePredictor(
            model, device="cpu", store=EmbeddingStore(tmp_path / dtype, dtype=dtype)
        )
        sizes[dtype] = pred.precompute([image])[0].nbytes
        assert EmbeddingStore(tmp_path / dtype).dtype == dtype  # read back from store.json
    assert sizes["fp16"] == sizes["bf16"] < 0.55 * sizes["fp32"]
