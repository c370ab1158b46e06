"""`label_from_exemplars`: each sample's boxes as its own prompts in a dataset job, the same
labels as `apply_model(Sam3Model)`, written back shard by shard, resumable, safe with data."""

from __future__ import annotations

import pytest

fo = pytest.importorskip("fiftyone")

from tests.fiftyone.helpers import load_plugin_module

sam3_fiftyone = load_plugin_module()


def _settings(checkpoint, **kwargs) -> dict:
    return {"checkpoint": checkpoint, "device": "cpu", "score_threshold": 0.0, **kwargs}


def _same_labels(dataset, a: str, b: str) -> None:
    for sample in dataset:
        x, y = sample[a].detections, sample[b].detections
        assert [d.label for d in x] == [d.label for d in y]
        for p, q in zip(x, y):
            assert p.confidence == pytest.approx(q.confidence, abs=1e-4)
            assert p.bounding_box == pytest.approx(q.bounding_box, abs=1e-6)
            assert (p.mask == q.mask).all()


@pytest.mark.parametrize(
    "options",
    [
        {"concepts": ["round blob"], "negative_tag": "negative"},  # text + boxes + negatives
        {"negative_label": "bg"},  # boxes alone, named by their label
    ],
)
def test_same_labels_as_apply_model_written_per_shard(dataset, checkpoint, options):
    dataset.set_values("notes", [f"n{i}" for i in range(len(dataset))])
    seen = []  # samples already written at each progress call

    def progress(fraction: float, text: str) -> None:
        seen.append(dataset.count("job"))

    report = sam3_fiftyone.label_from_exemplars(
        dataset, "job", "gt", batch_size=2, progress=progress, **options, **_settings(checkpoint)
    )
    assert (report.labeled, report.failed) == (len(dataset), 0) and seen[0] == 2 < len(dataset)
    model = sam3_fiftyone.Sam3Model(
        {
            "checkpoint": checkpoint,
            "device": "cpu",
            "classes": options.get("concepts", []),
            "prompt_field": "gt",
            "negative_label": options.get("negative_label"),
            "negative_tag": options.get("negative_tag"),
            "join_exemplars": True,
            "confidence_thresh": 0.0,
        }
    )
    dataset.apply_model(model, label_field="loop", batch_size=2)
    assert report.detections == dataset.count("loop.detections") > 0
    _same_labels(dataset, "job", "loop")
    labels = {"round blob"} if "concepts" in options else {"blob"}
    assert set(dataset.distinct("job.detections.label")) == labels
    assert dataset.values("notes") == [f"n{i}" for i in range(len(dataset))]
    assert dataset.count("gt.detections") == 2 * len(dataset)  # the prompts untouched


def test_never_overwrites_and_resumes(dataset, checkpoint):
    first = dataset.first()
    first["job"] = fo.Detections(detections=[fo.Detection(label="mine", bounding_box=[0, 0, 1, 1])])
    first.save()
    with pytest.raises(ValueError, match="already exists"):
        sam3_fiftyone.label_from_exemplars(dataset, "job", "gt", **_settings(checkpoint))
    with pytest.raises(ValueError, match="prompt field"):
        sam3_fiftyone.label_from_exemplars(
            dataset, "gt", "gt", overwrite=True, **_settings(checkpoint)
        )
    with pytest.raises(ValueError, match="exemplar field 'nope' does not exist"):
        sam3_fiftyone.label_from_exemplars(dataset, "new", "nope", **_settings(checkpoint))
    with pytest.raises(TypeError, match="unknown keyword 'negative_lable' .*'negative_label'"):
        sam3_fiftyone.label_from_exemplars(
            dataset, "new", "gt", negative_lable="bg", **_settings(checkpoint)
        )
    report = sam3_fiftyone.label_from_exemplars(
        dataset, "job", "gt", skip_labeled=True, **_settings(checkpoint)
    )
    assert (report.labeled, report.skipped) == (len(dataset) - 1, 1)
    assert dataset.first().job.detections[0].label == "mine"  # the user's label kept
    assert dataset.count("job") == len(dataset)


def test_samples_sharing_an_image_with_other_boxes(dataset, checkpoint, image_paths):
    twin = fo.Sample(filepath=image_paths[0], gt=fo.Detections())  # no boxes: other prompts
    same = fo.Sample(filepath=image_paths[1], gt=dataset.skip(1).first().gt.copy())
    dataset.add_samples([twin, same])
    report = sam3_fiftyone.label_from_exemplars(
        dataset, "job", "gt", concepts=["blob"], **_settings(checkpoint)
    )
    assert report.failed == 1 and "other exemplar boxes" in report.first_error
    assert report.labeled == dataset.count("job") == len(dataset) - 1
    assert dataset[twin.id].job is None
    assert dataset[same.id].job.detections  # same image, same boxes: labeled once, written twice
