"""SAM 3.1 checkpoints: Meta's full `sam3.1_multiplex.pt` key list maps exactly onto our SAM 3.1
model, and a tiny 3.1 model saved in that layout (or ours) loads strictly, without a config."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

from sam3_core.build import load_model
from sam3_core.config import get_config
from sam3_core.modeling.sam3 import Sam3Model
from sam3_core.weights.checkpoint import CheckpointError, detect_layout, to_our_layout
from tests.core.weights.hub_tools import fake_hub_cache, forbid_network
from tests.core.weights.layout_tools import assert_same_layout, generic_key, meta_state
from tests.core.weights.official_multiplex_layout import (
    official_keys_kept,
    official_multiplex_layout,
    tiny_multiplex_model,
    to_official_multiplex_layout,
)


@pytest.fixture(scope="module")
def full_reference() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return Sam3Model(get_config("sam3.1")).state_dict()


def test_official_31_key_list_maps_exactly_onto_our_sam31_model(full_reference):
    sd = meta_state(official_multiplex_layout())
    assert len(sd) == 1623  # Meta's model at 96914d2, RoPE tables included
    assert detect_layout(sd) == "official_multiplex"
    converted = to_our_layout(sd)
    assert_same_layout(converted, full_reference)
    assert {p.split(".")[0] for p in converted} == {
        "detector_model",
        "tracker_model",
        "tracker_neck",
        "propagation_neck",
        "multiplex_tracker",
    }


def test_legacy_31_prefixes_convert_like_the_released_ones():
    sd = meta_state(official_multiplex_layout())
    legacy = {
        re.sub(r"^detector\.", "sam3_model.", re.sub(r"^tracker\.", "sam2_predictor.", k)): v
        for k, v in sd.items()
    }
    assert detect_layout(legacy) == "official_multiplex"
    assert sorted(to_our_layout(legacy)) == sorted(to_our_layout(sd))


def test_a_31_tensor_without_a_module_is_refused_by_name():
    sd = meta_state(official_multiplex_layout())
    sd["tracker.model.future_head.weight"] = torch.empty(2, device="meta")
    with pytest.raises(CheckpointError, match="tracker.model.future_head.weight"):
        to_our_layout(sd)


def test_a_31_checkpoint_missing_a_tensor_is_refused_by_name(tmp_path):
    official = to_official_multiplex_layout(tiny_multiplex_model(seed=2).state_dict())
    del official["tracker.model.sam_mask_decoder.iou_token.weight"]
    path = tmp_path / "sam3.1_multiplex.pt"
    torch.save(official, path)
    with pytest.raises(CheckpointError, match=r"multiplex_tracker\.mask_decoder\.iou_token"):
        load_model(path)


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    """A perturbed tiny SAM 3.1 model and its weights in Meta's layout and in ours."""
    model = tiny_multiplex_model(seed=5)
    folder = tmp_path_factory.mktemp("sam31")
    ours, official = folder / "model.safetensors", folder / "sam3.1_multiplex.pt"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, ours)
    torch.save(to_official_multiplex_layout(model.state_dict()), official)
    return model, {"ours": ours, "official": official}


def test_tiny_official_31_file_has_official_names(tiny_files):
    _, files = tiny_files
    official = torch.load(files["official"], map_location="cpu", weights_only=True)
    assert detect_layout(official) == "official_multiplex"
    kept = official_keys_kept()
    assert not [k for k in official if k not in kept]  # exact official names
    assert {generic_key(k) for k in official} == {generic_key(k) for k in kept}


@pytest.mark.parametrize("layout", ["ours", "official"])
def test_tiny_31_checkpoint_loads_strictly_without_a_config(tiny_files, layout):
    model, files = tiny_files
    loaded = load_model(files[layout])  # no config: the checkpoint picks sam3.1_tiny
    assert loaded.config == get_config("sam3.1_tiny")
    assert loaded.config.kind == "sam3.1"
    assert loaded.loaded_parts >= {
        "vision encoder",
        "detector",
        "tracker",
        "multiplex tracker",
    }
    ref = model.state_dict()
    got = loaded.state_dict()
    assert sorted(got) == sorted(ref)
    for k, v in ref.items():
        assert torch.equal(got[k], v), k
    assert not any(torch.isnan(v).any() for v in got.values() if v.is_floating_point())


def test_sam31_video_is_refused_by_name(tiny_files):
    from sam3_core.weights.errors import MissingPartError

    _, files = tiny_files
    loaded = load_model(files["ours"])
    loaded.require_parts("vision encoder", "tracker", task="clicks")  # images work
    with pytest.raises(MissingPartError, match="SAM 3.1 .*video"):
        loaded.require_parts("vision encoder", "tracker", "video memory", task="video")


def test_hub_id_facebook_sam31_loads_the_multiplex_checkpoint(tiny_files, tmp_path, monkeypatch):
    # The hub cache holds facebook/sam3.1's sam3.1_multiplex.pt (here the tiny one): the hub id
    # alone picks SAM 3.1, with no config and no network.
    from huggingface_hub import constants

    model, files = tiny_files
    fake_hub_cache(
        tmp_path, "facebook/sam3.1", {"sam3.1_multiplex.pt": files["official"].read_bytes()}
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    forbid_network(monkeypatch)
    loaded = load_model("facebook/sam3.1")
    assert loaded.config.kind == "sam3.1"
    name = "multiplex_tracker.mask_decoder.mask_tokens.weight"
    assert torch.equal(loaded.state_dict()[name], model.state_dict()[name])
