"""load_model rebuilds exactly the model that was saved (weights and derived buffers), and the
checkpoint, not the caller, picks the config."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from sam3_core import ImagePredictor, load_model
from sam3_core.build import build_model
from sam3_core.config import get_config, sam3_tiny
from sam3_core.weights.errors import CheckpointError
from tests.core.helpers import (
    loaded_after,
    make_image,
    save_bare_checkpoint,
    save_checkpoint,
    tiny_model,
)


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


def test_the_checkpoint_picks_its_config(tmp_path):
    # A tiny SAM 3 file without a config record: the preset whose shapes fit it is used.
    path = save_bare_checkpoint(tiny_model(seed=1), tmp_path / "model.safetensors")
    assert load_model(path).config == get_config("sam3_tiny")
    assert load_model(path, config="sam3_tiny").config == get_config("sam3_tiny")  # still accepted


def test_a_custom_config_travels_in_the_checkpoint_record(tmp_path):
    cfg = replace(sam3_tiny(), detr_decoder=replace(sam3_tiny().detr_decoder, num_queries=5))
    model = build_model(cfg)
    recorded = save_checkpoint(model, tmp_path / "custom.safetensors")
    loaded = load_model(recorded)
    assert loaded.config == cfg
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # The same weights without the record fit no preset: the error says to pass the config.
    bare = save_bare_checkpoint(model, tmp_path / "bare.safetensors")
    with pytest.raises(CheckpointError, match="pass config="):
        load_model(bare)
    assert load_model(bare, config=cfg).config == cfg


def test_a_config_that_does_not_fit_names_the_one_that_does(tmp_path):
    path = save_checkpoint(tiny_model(seed=1), tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match="fits the 'sam3_tiny' config"):
        load_model(path, config="sam3.1_tiny")


@pytest.mark.parametrize("config", ["sam3_tiny", "sam3.1_tiny"])
def test_loading_builds_on_meta_without_importing_dynamo(tmp_path, config):
    # Building on the meta device runs no initialiser and no scalar arithmetic there: either
    # would import torch._dynamo (about 2.5 s in every process that loads a model: each Ray
    # worker, each CLI run). The loaded model still answers as the saved one (test above).
    path = save_checkpoint(build_model(config), tmp_path / "m.safetensors")
    code = f"from sam3_core.build import load_model\nm = load_model({str(path)!r})"
    assert loaded_after(code, ["torch", "torch._dynamo"]) == {"torch": True, "torch._dynamo": False}
    init = torch.nn.init.normal_
    model = load_model(path)
    assert torch.nn.init.normal_ is init  # the initialisers are back after building
    rope = model.detector_model.vision_encoder.backbone.layers[0].rope
    fresh = build_model(config).detector_model.vision_encoder.backbone.layers[0].rope
    assert rope.device.type == "cpu" and torch.equal(rope, fresh)  # recomputed after loading
