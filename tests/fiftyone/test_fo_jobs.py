"""`label_view`: a view labeled through sam3_core.jobs, written back shard by shard, resumable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

fo = pytest.importorskip("fiftyone")

from tests.fiftyone.helpers import load_plugin_module

sam3_fiftyone = load_plugin_module()


def _settings(checkpoint, **kwargs) -> dict:
    return {
        "checkpoint": checkpoint,
        "config": "sam3_tiny",
        "device": "cpu",
        "score_threshold": 0.0,
        "batch_size": 2,
        **kwargs,
    }


def test_label_view_matches_the_model_and_writes_as_shards_finish(dataset, checkpoint):
    seen = []  # (fraction, samples already in the dataset) at each progress call

    def progress(fraction: float, text: str) -> None:
        seen.append((fraction, dataset.count("jobs")))

    report = sam3_fiftyone.label_view(
        dataset, "jobs", ["blob", "stripe"], progress=progress, **_settings(checkpoint)
    )
    n = len(dataset)
    assert (report.labeled, report.skipped, report.failed) == (n, 0, 0)
    assert seen[0][1] == 2 and seen[0][0] < 1  # the first shard was written before the rest
    assert seen[-1] == (1.0, n)
    assert not any(Path(os.environ["SAM3_FIFTYONE_JOBS"]).rglob("*.parquet"))  # folder removed

    model = sam3_fiftyone.Sam3Model(
        {
            "checkpoint": checkpoint,
            "config_name": "sam3_tiny",
            "device": "cpu",
            "classes": ["blob", "stripe"],
            "confidence_thresh": 0.0,
        }
    )
    dataset.apply_model(model, label_field="loop", batch_size=2)
    assert report.detections == dataset.count("loop.detections") > 0
    for sample in dataset:  # the same instances as the in-process model
        jobs, loop = sample.jobs.detections, sample.loop.detections
        assert [d.label for d in jobs] == [d.label for d in loop]
        for a, b in zip(jobs, loop):
            assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
            assert a.bounding_box == pytest.approx(b.bounding_box, abs=1e-6)
            assert (a.mask == b.mask).all()


def test_label_view_refuses_before_loading_anything(dataset, checkpoint, monkeypatch):
    import sam3_core.jobs

    dataset.set_values("mine", [fo.Detections()] * len(dataset))
    with pytest.raises(ValueError, match="set overwrite=True"):
        sam3_fiftyone.label_view(dataset, "mine", ["blob"], **_settings(checkpoint))
    with pytest.raises(ValueError, match="at least one concept"):
        sam3_fiftyone.label_view(dataset, "new", [" "], **_settings(checkpoint))
    dataset.set_values("notes", ["n"] * len(dataset))
    with pytest.raises(ValueError, match="'notes' already exists and holds StringField, not Det"):
        sam3_fiftyone.label_view(
            dataset, "notes", ["blob"], overwrite=True, **_settings(checkpoint)
        )
    with pytest.raises(
        TypeError,
        match=r"label_view\(\) got an unknown keyword 'ovewrite' "
        r"\(did you mean 'overwrite'\?\): its job settings are output, ",
    ):
        sam3_fiftyone.label_view(dataset, "mine", ["blob"], ovewrite=True, **_settings(checkpoint))

    def no_job(*args, **kwargs):
        raise AssertionError("a job ran with nothing to label")

    monkeypatch.setattr(sam3_core.jobs, "run_job", no_job)
    report = sam3_fiftyone.label_view(
        dataset, "mine", ["blob"], skip_labeled=True, **_settings(checkpoint)
    )
    assert (report.labeled, report.skipped) == (0, len(dataset))


def test_missing_image_is_reported_others_labeled(dataset, checkpoint, tmp_path):
    dataset.add_sample(fo.Sample(filepath=str(tmp_path / "gone.png")))
    report = sam3_fiftyone.label_view(dataset, "jobs", ["blob"], **_settings(checkpoint))
    assert report.failed == 1 and "gone.png" in report.first_error
    assert report.labeled == dataset.count("jobs") == len(dataset) - 1
