"""`dataset.apply_model` with the plugin's Sam3Model on a tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")

from tests.fiftyone.helpers import load_plugin_module


def _model(checkpoint, **kwargs):
    model_mod = load_plugin_module("model")
    cfg = {"checkpoint": checkpoint, "config_name": "sam3_tiny", "device": "cpu", **kwargs}
    return model_mod.Sam3Model(model_mod.Sam3ModelConfig(cfg))


def _check_masks(sample, field):
    dets = sample[field].detections
    h, w = sample.metadata.height, sample.metadata.width
    for d in dets:
        x, y, bw, bh = d.bounding_box
        assert 0 <= x and 0 <= y and x + bw <= 1 + 1e-6 and y + bh <= 1 + 1e-6
        assert d.mask.shape == (round(bh * h), round(bw * w))
        assert 0.0 <= d.confidence <= 1.0
    return dets


def test_apply_model_concepts_batched(dataset, checkpoint):
    model = _model(checkpoint, classes=["blob", "stripe"], confidence_thresh=0.0)
    assert model.media_type == "image" and not model.ragged_batches
    dataset.apply_model(model, label_field="sam3", batch_size=2, skip_failures=False)
    dataset.compute_metadata()
    for sample in dataset:
        dets = _check_masks(sample, "sam3")
        assert dets and {d.label for d in dets} <= {"blob", "stripe"}
    assert dataset.count("sam3.detections") > 0
    assert dataset.count("gt.detections") == 2 * len(dataset)  # prompts untouched


def test_apply_model_exemplar_and_keypoint_prompts(dataset, checkpoint):
    model = _model(checkpoint, output="boxes", confidence_thresh=0.0)
    dataset.apply_model(model, label_field="boxes", prompt_field="gt", skip_failures=False)
    labels = dataset.distinct("boxes.detections.label")
    assert labels == ["bg", "blob"]  # image-only concepts keep the exemplars' labels
    assert all(d.mask is None for d in dataset.first().boxes.detections)

    for sample in dataset:
        sample["clicks"] = fo.Keypoints(
            keypoints=[
                fo.Keypoint(label="thing", points=[[0.3, 0.3], [0.8, 0.8]], sam_labels=[1, 0]),
            ]
        )
        sample.save()
    clicks = _model(checkpoint, prompt_field="clicks")
    dataset.apply_model(clicks, label_field="clicked", skip_failures=False)
    dataset.compute_metadata()
    for sample in dataset:  # one object per Keypoint, with a mask, on every image
        dets = _check_masks(sample, "clicked")
        assert [d.label for d in dets] == ["thing"] and dets[0].mask.any()


def test_model_needs_a_prompt_and_caches_the_predictor(checkpoint):
    model = _model(checkpoint)
    with pytest.raises(ValueError, match="classes="):
        model.predict(np.zeros((32, 32, 3), np.uint8))
    assert _model(checkpoint).predictor is model.predictor  # loaded once per settings


def test_image_and_video_predictors_share_one_model(checkpoint, tmp_path, monkeypatch):
    """Tracking reuses the model of the image predictor of the same settings (one load)."""
    import shutil

    import sam3_core.build

    predictors = load_plugin_module("predictors")
    loads = []
    load_model = sam3_core.build.load_model
    monkeypatch.setattr(
        sam3_core.build, "load_model", lambda *a, **k: loads.append(a) or load_model(*a, **k)
    )
    path = str(shutil.copy(checkpoint, tmp_path / "own.safetensors"))  # a key of its own
    video = predictors.cached_predictor("video", path, "sam3_tiny", "cpu")
    image = _model(path).predictor
    assert len(loads) == 1
    assert video.model is image.model and video.device == image.device
    assert predictors.cached_predictor("video", path, "sam3_tiny", "cpu") is video
    with pytest.raises(ValueError, match="'image' or 'video'"):
        predictors.cached_predictor("audio", path)
