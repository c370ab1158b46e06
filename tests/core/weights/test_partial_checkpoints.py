"""Checkpoints that hold part of SAM 3 load as users have them, and never run a part at random.

transformers writes a detector-only file (`Sam3Model.save_pretrained`) and tracker-only files
(`Sam3TrackerModel` / `Sam3TrackerVideoModel.save_pretrained`, keys
`tracker_model.detector_model.vision_encoder.*`, `tracker_model.tracker_neck.*`, ...). Each
serves what it holds; a call that needs another part raises MissingPartError naming it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sam3_core import ImagePredictor, VideoPredictor, build_model, load_model
from sam3_core.config import sam3_tiny
from sam3_core.weights.checkpoint import CheckpointError, detect_layout, load_weights
from sam3_core.weights.errors import MissingPartError
from tests.core.helpers import make_image, save_checkpoint, tiny_model
from tests.reference import hf_detector, hf_released_image_tracker, hf_video_tracker

pytest.importorskip("transformers")
CFG = sam3_tiny()
CLICK = {"points": [[40.0, 30.0], [90.0, 60.0]], "point_labels": [1, 0]}
EXEMPLAR = [(20.0, 15.0, 70.0, 60.0)]


@pytest.fixture(scope="module")
def full():
    """Our full tiny model with perturbed weights: the source of every partial file."""
    return tiny_model(seed=2)


@pytest.fixture(scope="module")
def files(full, tmp_path_factory):
    """Folders written by transformers' save_pretrained, and a tracker's raw state_dict."""
    root = tmp_path_factory.mktemp("partial")
    detector = hf_detector(CFG, seed=3)
    detector.save_pretrained(root / "detector")
    hf_released_image_tracker(full).save_pretrained(root / "tracker")
    hf_video_tracker(full).save_pretrained(root / "tracker_video")
    raw = {k: v.contiguous() for k, v in hf_released_image_tracker(full).state_dict().items()}
    save_file(raw, root / "tracker_state_dict.safetensors")
    return {
        "detector": root / "detector",
        "tracker": root / "tracker",
        "tracker_video": root / "tracker_video",
        "tracker_state_dict": root / "tracker_state_dict.safetensors",
        "detector_weights": detector.state_dict(),
    }


def _answers(model, image):
    """Concept, exemplar and click results of a model on one image (None where it refuses)."""
    pred = ImagePredictor(model, device="cpu")
    state = pred.set_image(image)
    out = {}
    for name, kwargs in (
        ("concept", {"concepts": "cell", "score_threshold": 0.0}),
        ("exemplar", {"exemplars": EXEMPLAR, "score_threshold": 0.0}),
        ("click", CLICK),
    ):
        try:
            out[name] = pred.predict(state, **kwargs)
        except MissingPartError as err:
            out[name] = err
    return out


def _same(a, b) -> None:
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, atol=1e-5)
    assert np.array_equal(a.masks, b.masks)


def test_detector_only_file_serves_concepts_and_names_the_tracker_for_clicks(full, files):
    loaded = load_model(files["detector"], config="sam3_tiny")
    assert loaded.loaded_parts == {"vision encoder", "detector"}
    reference = tiny_model(seed=2)
    reference.detector_model.load_state_dict(files["detector_weights"])
    image = make_image(90, 130, seed=3)
    got, want = _answers(loaded, image), _answers(reference, image)
    _same(got["concept"], want["concept"])
    _same(got["exemplar"], want["exemplar"])
    assert len(got["concept"]) == CFG.detr_decoder.num_queries
    assert isinstance(got["click"], MissingPartError)
    text = str(got["click"])
    assert "holds the detector only; the tracker" in text and "is needed for clicks" in text
    assert "load facebook/sam3's full checkpoint" in text
    # Never random: the parts it lacks hold NaN, so even a call past the check could not pass.
    assert torch.isnan(loaded.tracker_model.mask_decoder.iou_token.weight).all()


@pytest.mark.parametrize(
    "layout, missing", [("detector", "the tracker .*video memory"), ("tracker", "video memory")]
)
def test_files_without_the_video_parts_refuse_video_by_name(files, layout, missing):
    """A video session needs the tracker and its memory: refused when it starts (an image-only
    tracker file would otherwise track with unloaded memory weights: empty masks, no error)."""
    vp = VideoPredictor(load_model(files[layout], config="sam3_tiny"), device="cpu")
    with pytest.raises(MissingPartError, match=f"{missing} .*needed for video"):
        vp.start(np.stack([make_image(64, 80, seed=5)] * 2))


@pytest.mark.parametrize("layout", ["tracker", "tracker_state_dict"])
def test_tracker_only_file_serves_clicks_and_names_the_detector_for_concepts(full, files, layout):
    loaded = load_model(files[layout], config="sam3_tiny")
    assert loaded.loaded_parts == {"vision encoder", "tracker"}
    image = make_image(90, 130, seed=3)
    got, want = _answers(loaded, image), _answers(full, image)
    _same(got["click"], want["click"])
    assert got["click"].masks.any()
    for name in ("concept", "exemplar"):
        assert isinstance(got[name], MissingPartError)
        text = str(got[name])
        assert "holds the tracker only; the detector" in text
        assert "is needed for concepts and exemplars" in text


def test_tracker_files_map_the_vit_and_the_tracker_neck(full, files):
    from sam3_core.weights.checkpoint import load_state_dict

    saved = load_state_dict(files["tracker"])
    assert any(k.startswith("tracker_model.detector_model.vision_encoder.") for k in saved)
    assert any(k.startswith("tracker_model.tracker_neck.") for k in saved)
    assert detect_layout(saved) == "hf_tracker"
    video = load_model(files["tracker_video"], config="sam3_tiny")
    assert video.loaded_parts == {"vision encoder", "tracker", "video memory"}
    ours = full.state_dict()
    for key, value in video.state_dict().items():
        if not key.startswith("detector_model.") or ".backbone." in key:
            assert torch.equal(value, ours[key]), key


def test_load_weights_fills_the_vit_from_a_tracker_file_and_blocks_the_random_detector(full, files):
    # Before: the tracker file's keys went unused, leaving the ViT and tracker neck random.
    target = build_model(CFG)
    assert target.loaded_parts is None  # built at random on purpose: every part usable
    load_weights(target, files["tracker"], strict=False)
    assert target.loaded_parts == {"vision encoder", "tracker"}
    backbone = "detector_model.vision_encoder.backbone.layers.0.attention.q_proj.weight"
    assert torch.equal(target.state_dict()[backbone], full.state_dict()[backbone])
    image = make_image(90, 130, seed=3)
    got, want = _answers(target, image), _answers(full, image)
    _same(got["click"], want["click"])
    assert isinstance(got["concept"], MissingPartError)  # its random detector is never used


def test_a_detector_loaded_over_a_full_model_keeps_its_tracker(full, files, tmp_path):
    model = load_model(save_checkpoint(full, tmp_path / "model.safetensors"), config="sam3_tiny")
    load_weights(model, files["detector"])
    assert model.loaded_parts == {"vision encoder", "detector", "tracker", "video memory"}
    key = "detector_model.detr_decoder.query_embed.weight"
    assert torch.equal(model.state_dict()[key], files["detector_weights"][key.split(".", 1)[1]])
    ours = full.state_dict()
    kept = [k for k in ours if k.startswith(("tracker_model.", "tracker_neck."))]
    assert all(torch.equal(model.state_dict()[k], ours[k]) for k in kept)
    assert not isinstance(_answers(model, make_image(seed=1))["click"], MissingPartError)


@pytest.mark.parametrize("strict", [True, False])
def test_a_part_held_partly_is_refused_by_name(full, tmp_path, strict):
    sd = dict(full.state_dict())
    del sd["detector_model.vision_encoder.backbone.layers.1.mlp.fc2.weight"]
    del sd["tracker_neck.fpn_layers.0.proj1.bias"]
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(CheckpointError) as info:
        load_weights(build_model(CFG), path, strict=strict)
    text = str(info.value)
    n_vit = sum(k.startswith("detector_model.vision_encoder.backbone.") for k in full.state_dict())
    assert f"the vision encoder (the ViT image encoder): {n_vit - 1} of {n_vit} tensors" in text
    assert "the tracker (" in text and "loaded whole or not at all" in text
    assert "layers.1.mlp.fc2.weight" in text


def test_a_file_without_the_vit_is_refused(full, tmp_path):
    sd = {k: v for k, v in full.state_dict().items() if ".backbone." not in k}
    path = tmp_path / "no_vit.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(CheckpointError, match="needs the ViT image encoder"):
        load_model(path, config="sam3_tiny")
