"""The track-in-videos operator on small generated videos: a boxed object and concepts."""

from __future__ import annotations

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")
av = pytest.importorskip("av")

import fiftyone.operators as foo

from tests.core.helpers import make_image, write_mp4

H, W, T = 64, 80, 5
BOX = [5 / W, 5 / H, 40 / W, 40 / H]  # relative xywh of the pixel box (5, 5, 45, 45)


def _write_video(path, frames=3, h=64, w=80) -> str:
    write_mp4(path, np.stack([make_image(h, w, seed=t) for t in range(frames)]), fps=5)
    return str(path)


def _moving_clip(path) -> str:
    """A drifting image on which the tiny model keeps the boxed object on every frame."""
    base = make_image(H, W, seed=5)
    write_mp4(path, np.stack([np.roll(base, (2 * t, 3 * t), (0, 1)) for t in range(T)]))
    return str(path)


def _track(ds, params: dict) -> dict:
    res = foo.execute_operator(
        "@sam3/fiftyone/track_videos", ctx={"dataset": ds.name, "params": params}
    )
    res.raise_exceptions()
    return res.result


def test_track_boxed_object(checkpoint, tmp_path):
    """A box on frame 2 starts one track, found with a mask on every frame from 2 on."""
    ds = fo.Dataset()
    try:
        sample = fo.Sample(filepath=_moving_clip(tmp_path / "clip.mp4"))
        sample.frames[2]["gt"] = fo.Detections(
            detections=[fo.Detection(label="cell", bounding_box=BOX)]
        )
        ds.add_sample(sample)
        params = {
            "checkpoint": checkpoint,
            "prompt_field": "gt",
            "prompt_frame": 2,
            "output_field": "tracks",
        }
        result = _track(ds, params)
        assert (result["labeled"], result["failed"], result["detections"]) == (1, 0, T - 1)
        sample = ds.first()
        assert sample.frames[1]["tracks"] is None  # before the prompt frame: not tracked
        ids = set()
        for number in range(2, T + 1):
            dets = sample.frames[number]["tracks"].detections
            assert len(dets) == 1, number
            det = dets[0]
            ids.add(det.index)
            assert det.label == "cell" and det.mask is not None and det.mask.any()
            x, y, w, h = det.bounding_box
            assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 1 and y + h <= 1
        assert len(ids) == 1 and None not in ids
        gt = sample.frames[2]["gt"].detections  # the prompt field is untouched
        assert len(gt) == 1 and gt[0].label == "cell" and gt[0].bounding_box == BOX
        assert all(sample.frames[n]["gt"] is None for n in (1, 3, 4, 5))

        # again from frame 3 with overwrite: frame 2's labels of the first run are cleared
        sample.frames[3]["gt"] = sample.frames[2]["gt"].copy()
        sample.save()
        result = _track(ds, {**params, "prompt_frame": 3, "overwrite": True})
        assert result["labeled"] == 1 and result["failed"] == 0
        sample = ds.first()
        assert sample.frames[2]["tracks"] is None
        assert sample.frames[3]["tracks"] is not None
    finally:
        ds.delete()


def test_track_concepts_and_boxes(checkpoint, tmp_path):
    ds = fo.Dataset()
    try:
        sample = fo.Sample(filepath=_write_video(tmp_path / "clip.mp4"))
        sample.frames[1]["gt"] = fo.Detections(
            detections=[fo.Detection(label="blob", bounding_box=[0.1, 0.1, 0.4, 0.4])]
        )
        ds.add_sample(sample)
        params = {
            "checkpoint": checkpoint,
            "score_threshold": 0.0,
            "concepts": ["blob"],
            "prompt_field": "gt",
            "output_field": "tracks",
        }
        result = _track(ds, params)
        assert result["labeled"] == 1 and result["failed"] == 0
        sample = ds.first()
        assert sorted(sample.frames.keys()) == [1, 2, 3]
        assert all(f["tracks"] is not None for f in sample.frames.values())
        dets = [d for f in sample.frames.values() for d in f["tracks"].detections]
        # random tiny weights lose the objects after frame 1 of this clip (its frames differ
        # wholly); the concept is found on the prompt frame and what is found carries track ids
        assert sample.frames[1]["tracks"].detections
        assert all(d.index is not None and d.label in ("blob", "object") for d in dets)
        assert sample.frames[1]["gt"] is not None  # prompts kept
    finally:
        ds.delete()


def test_track_needs_prompts(checkpoint, tmp_path):
    """A video without boxes on the prompt frame (and no concepts) fails with a clear message;
    an unknown prompt field is refused before any video is read."""
    ds = fo.Dataset()
    try:
        sample = fo.Sample(filepath=_write_video(tmp_path / "clip.mp4"))
        sample.frames[1]["gt"] = fo.Detections()
        ds.add_sample(sample)
        params = {
            "checkpoint": checkpoint,
            "prompt_field": "gt",
            "output_field": "tracks",
        }
        result = _track(ds, params)
        assert result["failed"] == 1 and "no boxes in 'gt' on frame 1" in result["first_error"]
        with pytest.raises(Exception, match="no frame-level field 'nope'"):
            _track(ds, {**params, "prompt_field": "nope"})
    finally:
        ds.delete()


def test_track_into_a_new_field_with_skip_labeled_then_resume(checkpoint, tmp_path):
    """skip_labeled on a field not yet in the schema labels every video; a second run with it
    skips the labeled video and labels only the new one (the job never aborts)."""
    ds = fo.Dataset()
    try:
        ds.add_sample(fo.Sample(filepath=_write_video(tmp_path / "a.mp4")))
        params = {
            "checkpoint": checkpoint,
            "score_threshold": 0.0,
            "concepts": ["blob"],
            "output_field": "tracks",
            "skip_labeled": True,
        }
        assert not ds.has_frame_field("tracks")
        result = _track(ds, params)
        assert (result["labeled"], result["skipped"], result["failed"]) == (1, 0, 0)
        first = ds.first()
        kept = {n: [d.id for d in f["tracks"].detections] for n, f in first.frames.items()}
        assert sorted(kept) == [1, 2, 3]

        ds.add_sample(fo.Sample(filepath=_write_video(tmp_path / "b.mp4")))
        result = _track(ds, params)
        assert (result["labeled"], result["skipped"], result["failed"]) == (1, 1, 0)
        first = ds.first()
        assert {n: [d.id for d in f["tracks"].detections] for n, f in first.frames.items()} == kept
        assert all(f["tracks"] is not None for f in ds.last().frames.values())
    finally:
        ds.delete()


def test_track_from_a_later_frame_into_a_new_field(checkpoint, tmp_path):
    """Prompt frame 2 while frame 1 already exists (it holds the user's labels): the new field is
    written from frame 2 on, frame 1 keeps what it had."""
    ds = fo.Dataset()
    try:
        sample = fo.Sample(filepath=_moving_clip(tmp_path / "clip.mp4"))
        sample.frames[1]["note"] = fo.Classification(label="start")
        sample.frames[2]["gt"] = fo.Detections(
            detections=[fo.Detection(label="cell", bounding_box=BOX)]
        )
        ds.add_sample(sample)
        assert not ds.has_frame_field("tracks")
        params = {
            "checkpoint": checkpoint,
            "prompt_field": "gt",
            "prompt_frame": 2,
            "output_field": "tracks",
        }
        result = _track(ds, params)
        assert (result["labeled"], result["failed"], result["detections"]) == (1, 0, T - 1)
        sample = ds.first()
        assert sample.frames[1]["tracks"] is None and sample.frames[1]["note"].label == "start"
        assert all(len(sample.frames[n]["tracks"].detections) == 1 for n in range(2, T + 1))
    finally:
        ds.delete()


def test_skip_labeled_videos_load_no_model(checkpoint, tmp_path, monkeypatch):
    """With every video labeled, skip_labeled finishes without loading a model."""
    from tests.fiftyone.helpers import load_plugin_module

    predictors = load_plugin_module("predictors")
    ds = fo.Dataset()
    try:
        sample = fo.Sample(filepath=_write_video(tmp_path / "a.mp4"))
        sample.frames[1]["tracks"] = fo.Detections(detections=[fo.Detection(label="mine")])
        ds.add_sample(sample)

        def no_load(*args, **kwargs):
            raise AssertionError("a model was loaded with nothing to track")

        monkeypatch.setattr(predictors, "cached_predictor", no_load)
        params = {"concepts": ["blob"], "output_field": "tracks", "skip_labeled": True}
        result = _track(ds, {"checkpoint": checkpoint, **params})
        assert (result["labeled"], result["skipped"]) == (0, 1)
        assert ds.first().frames[1]["tracks"].detections[0].label == "mine"
        form = foo.get_operator("@sam3/fiftyone/track_videos")
        from fiftyone.operators.executor import ExecutionContext

        ctx = ExecutionContext(request_params={"dataset_name": ds.name})
        assert form.resolve_placement(ctx) is not None  # a grid button on video datasets
    finally:
        ds.delete()


def test_boxed_object_keeps_its_box_on_the_prompt_frame():
    """An object whose mask is empty on its own prompt frame keeps the user's box there."""
    from tests.fiftyone.helpers import load_plugin_module

    tracking = load_plugin_module("tracking")
    found = fo.Detection(label="cell", bounding_box=[0.1, 0.1, 0.2, 0.2], index=1)
    dets = fo.Detections(detections=[found])
    boxes = {1: (8.0, 6.4, 24.0, 19.2), 2: (40.0, 32.0, 60.0, 48.0)}
    tracking.keep_prompt_boxes(dets, {1: "cell", 2: "nucleus"}, boxes, W, H)
    assert [(d.label, d.index) for d in dets.detections] == [("cell", 1), ("nucleus", 2)]
    added = dets.detections[1]
    assert added.bounding_box == pytest.approx([0.5, 0.5, 0.25, 0.25])
    assert added.mask is None
