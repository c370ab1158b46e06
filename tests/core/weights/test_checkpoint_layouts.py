"""Both checkpoint layouts give identical models: a tiny model saved as our (transformers)
`model.safetensors` and as Meta's official `sam3.pt` loads to the same weights and outputs."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sam3_core import ImagePredictor
from sam3_core.build import load_model
from sam3_core.weights.checkpoint import detect_layout, to_our_layout
from sam3_core.weights.official import DROPPED
from tests.core.helpers import make_image, tiny_model
from tests.core.weights.layout_tools import generic_key
from tests.core.weights.official_layout import (
    FOURIER,
    FOURIER_ALIAS,
    official_layout,
    to_official_layout,
)


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    """The perturbed tiny model's weights, with the tracker's one Fourier matrix in both keys
    (as in the released checkpoints; the official layout cannot hold two different ones)."""
    sd = {k: v.detach().clone() for k, v in tiny_model(seed=3).state_dict().items()}
    sd[FOURIER_ALIAS] = sd[FOURIER].clone()
    return sd


@pytest.fixture(scope="module")
def files(state, tmp_path_factory) -> dict[str, object]:
    """The same weights written in both layouts."""
    folder = tmp_path_factory.mktemp("layouts")
    ours, official = folder / "model.safetensors", folder / "sam3.pt"
    save_file(state, ours)
    torch.save(to_official_layout(state), official)
    return {"ours": ours, "official": official}


@pytest.fixture(scope="module")
def models(files) -> dict[str, torch.nn.Module]:
    return {name: load_model(path, config="sam3_tiny") for name, path in files.items()}


def test_official_file_reads_with_weights_only_and_has_the_official_keys(files):
    official = torch.load(files["official"], map_location="cpu", weights_only=True)
    assert detect_layout(official) == "official"
    full = official_layout()
    kept = {k: v for k, v in full.items() if not DROPPED.search(k)}
    assert all(k.startswith(("detector.", "tracker.")) for k in official)
    assert not [k for k in official if k not in full]  # exact official names, layer indices too
    # Every kind of official tensor is written (RoPE tables and detector point projections,
    # which the conversion drops, aside), each with the official number of dimensions.
    assert {generic_key(k) for k in official} == {generic_key(k) for k in kept}
    assert not [k for k, v in official.items() if v.ndim != len(full[k][0])]
    assert all(v.dtype == torch.float32 for v in official.values())
    # The layout-specific shapes of the value transforms.
    vit = official["detector.backbone.vision_backbone.trunk.pos_embed"]
    assert vit.shape[1] == 1 + 4 * 4  # cls slot + the 56 / 14 pretraining grid
    proj = official["detector.backbone.language_backbone.encoder.text_projection"]
    assert proj.shape == (64, 512)  # (width, embed_dim): used as x @ P
    qkv = official["detector.backbone.vision_backbone.trunk.blocks.0.attn.qkv.weight"]
    assert qkv.shape == (3 * 64, 64)
    points = [k for k in official if ".sam_prompt_encoder.point_embeddings." in k]
    assert len(points) == 4
    assert all(official[k].shape == (1, 128) for k in points)


def test_official_layout_converts_back_exactly(state):
    back = to_our_layout(to_official_layout(state))
    assert sorted(back) == sorted(state)
    assert not [k for k, v in state.items() if not torch.equal(back[k], v)]


def test_both_layouts_load_identical_weights(models, state):
    ours, official = (models[n].state_dict() for n in ("ours", "official"))
    assert sorted(ours) == sorted(official) == sorted(state)
    assert not [k for k in state if not torch.equal(ours[k], official[k])]
    assert not [k for k in state if not torch.equal(ours[k], state[k])]


def _assert_same(a, b) -> None:
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name
        else:
            assert x == y, f.name


def test_both_layouts_predict_identically(models):
    image = make_image()
    preds = {n: ImagePredictor(m, device="cpu") for n, m in models.items()}
    states = {n: p.set_image(image) for n, p in preds.items()}
    assert torch.equal(states["ours"].features.vit, states["official"].features.vit)

    found = {n: p.predict(states[n], "cat", score_threshold=0.0) for n, p in preds.items()}
    assert len(found["ours"]) > 0
    _assert_same(found["ours"], found["official"])

    click = {"points": [[60.0, 40.0], [100.0, 70.0]], "point_labels": [1, 0]}
    clicked = {n: p.predict(states[n], **click) for n, p in preds.items()}
    assert len(clicked["ours"]) == 1 and clicked["ours"].masks.any()
    _assert_same(clicked["ours"], clicked["official"])
