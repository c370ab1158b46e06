"""Store keys and model signatures: what changes them and what does not."""

from __future__ import annotations

import torch

from sam3_core.store.keys import describe, differences, image_key, model_signature, weights_digest
from tests.core.helpers import tiny_model


def test_image_key_follows_the_pixels():
    pixels = torch.randint(0, 256, (3, 112, 112), dtype=torch.uint8)
    assert image_key(pixels) == image_key(pixels.clone())
    changed = pixels.clone()
    changed[1, 50, 60] ^= 1
    assert image_key(changed) != image_key(pixels)
    assert len(image_key(pixels)) == 32


def test_weights_digest_sees_trunk_and_click_neck_changes_only():
    model = tiny_model()
    base = weights_digest(model)
    assert weights_digest(tiny_model()) == base  # same weights, another object
    with torch.no_grad():
        big = model.detector_model.vision_encoder.backbone.layers[0].mlp.fc1.weight
        big.mul_(1 + 1e-6)  # a fine-tune-like change of every entry of one large tensor
        assert weights_digest(model) != base
        big.copy_(tiny_model().detector_model.vision_encoder.backbone.layers[0].mlp.fc1.weight)
        assert weights_digest(model) == base
        bias = model.tracker_neck.fpn_layers[2].proj1.bias
        saved = bias.clone()
        bias.add_(1e-3)
        assert weights_digest(model) != base
        bias.copy_(saved)
        model.detector_model.text_projection.weight.add_(1.0)  # not in the stored tensors
        assert weights_digest(model) == base


def test_signature_names_its_differences():
    model = tiny_model()
    a = model_signature(model, model.config, "fp32")
    b = model_signature(model, model.config, "bf16")
    assert differences(a, b) == ["precision"]
    assert "precision fp32" in describe(a) and a["weights"] in describe(a)
