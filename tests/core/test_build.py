"""load_model rebuilds exactly the model that was saved (weights and derived buffers)."""

from __future__ import annotations

import numpy as np
import torch

from sam3_core import ImagePredictor, load_model
from tests.core.helpers import make_image, save_checkpoint, tiny_model


def test_saved_and_loaded_models_answer_the_same(tmp_path):
    model = tiny_model(seed=4)
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path)
    loaded = load_model(path, config="sam3_tiny")
    for (name, a), (_, b) in zip(model.named_buffers(), loaded.named_buffers()):
        assert torch.equal(a, b), name
    image = make_image(seed=9)
    results = []
    for m in (model, loaded):
        pred = ImagePredictor(m, device="cpu")
        state = pred.set_image(image)
        results.append(
            (
                pred.predict(state, "cell", score_threshold=0.0),
                pred.predict(state, points=[[30, 40]], point_labels=[1]),
            )
        )
    (a_concept, a_click), (b_concept, b_click) = results
    np.testing.assert_array_equal(a_concept.scores, b_concept.scores)
    np.testing.assert_array_equal(a_concept.masks, b_concept.masks)
    np.testing.assert_array_equal(a_click.low_res_logits, b_click.low_res_logits)
