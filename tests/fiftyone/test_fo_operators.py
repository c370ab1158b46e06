"""The plugin's operators through `execute_operator`: immediate, delegated, safe with data."""

from __future__ import annotations

import pytest

fo = pytest.importorskip("fiftyone")

import fiftyone.operators as foo
from fiftyone.operators.delegated import DelegatedOperationService

AUTO = "@sam3/fiftyone/auto_label_concepts"
EXEMPLARS = "@sam3/fiftyone/label_from_exemplars"


def _params(checkpoint, **kwargs) -> dict:
    """Operator params: no model config (the tiny checkpoint records its own)."""
    return {
        "checkpoint": checkpoint,
        "score_threshold": 0.0,
        "batch_size": 2,
        **kwargs,
    }


def _run(uri, dataset, params, **ctx):
    result = foo.execute_operator(uri, ctx={"dataset": dataset.name, "params": params, **ctx})
    result.raise_exceptions()
    return result.result


def test_operators_are_registered():
    uris = {op.uri for op in foo.list_operators()}
    assert {AUTO, EXEMPLARS} <= uris


def test_auto_label_selected_samples_then_resume(dataset, checkpoint):
    first = dataset.first()
    out = _run(
        AUTO,
        dataset,
        _params(checkpoint, concepts=["blob"], output_field="sam3", view_target="SELECTED_SAMPLES"),
        selected=[first.id],
    )
    assert out["labeled"] == 1 and out["failed"] == 0 and out["detections"] > 0
    assert dataset.count("sam3") == 1
    kept = [d.id for d in dataset.first().sam3.detections]

    with pytest.raises(Exception, match="already exists"):  # never clobbered by accident
        _run(AUTO, dataset, _params(checkpoint, concepts=["blob"], output_field="sam3"))

    out = _run(
        AUTO,
        dataset,
        _params(
            checkpoint, concepts=["blob"], output_field="sam3", skip_labeled=True, output="boxes"
        ),
    )
    assert out["labeled"] == len(dataset) - 1 and out["skipped"] == 1
    assert [d.id for d in dataset.first().sam3.detections] == kept  # resumed, not redone
    assert dataset.count("sam3") == len(dataset)

    out = _run(
        AUTO, dataset, _params(checkpoint, concepts=["blob"], output_field="sam3", overwrite=True)
    )
    assert out["labeled"] == len(dataset)
    assert [d.id for d in dataset.first().sam3.detections] != kept


def test_refuses_fields_it_would_damage(dataset, checkpoint):
    with pytest.raises(Exception, match="prompt field"):
        _run(
            EXEMPLARS,
            dataset,
            _params(checkpoint, exemplar_field="gt", output_field="gt", overwrite=True),
        )
    dataset.set_values("kind", [fo.Classification(label="x")] * len(dataset))
    with pytest.raises(Exception, match="not Detections"):
        _run(
            AUTO, dataset, _params(checkpoint, concepts=["a"], output_field="kind", overwrite=True)
        )
    assert dataset.count("gt.detections") == 2 * len(dataset)


def test_unreadable_file_is_reported_and_the_job_goes_on(dataset, checkpoint, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    dataset.add_sample(fo.Sample(filepath=str(bad)))
    out = _run(AUTO, dataset, _params(checkpoint, concepts=["blob"], output_field="sam3"))
    assert out["failed"] == 1 and "broken.png" in out["first_error"]
    assert out["labeled"] == len(dataset) - 1
    assert dataset.count("sam3") == len(dataset) - 1


def test_label_from_selected_exemplars_with_negatives(dataset, checkpoint):
    sample = dataset.first()
    blob = sample.gt.detections[0]
    selected = [{"label_id": blob.id, "sample_id": sample.id, "field": "gt"}]
    out = _run(
        EXEMPLARS,
        dataset,
        _params(
            checkpoint,
            exemplar_field="gt",
            output_field="ex",
            use_selected_labels=True,
            negative_tag="negative",
        ),
        selected_labels=selected,
    )
    assert out["labeled"] == 1  # no text: only the image the exemplar is drawn in
    assert dataset.distinct("ex.detections.label") == ["blob"]

    out = _run(
        EXEMPLARS,
        dataset,
        _params(
            checkpoint,
            exemplar_field="gt",
            output_field="ex2",
            negative_label="bg",
            text="round blob",
        ),
    )
    assert out["labeled"] == len(dataset)
    assert dataset.distinct("ex2.detections.label") == ["round blob"]


def test_delegated_run_completes(dataset, checkpoint):
    queued = foo.execute_operator(
        AUTO,
        ctx={
            "dataset": dataset.name,
            "request_delegation": True,
            "params": _params(checkpoint, concepts=["blob"], output_field="later", delegate=True),
        },
    )
    queued.raise_exceptions()
    assert not dataset.has_sample_field("later")  # queued, not run
    DelegatedOperationService().execute_queued_operations(dataset_name=dataset.name)
    dataset.reload()
    assert dataset.count("later") == len(dataset)
    ops = DelegatedOperationService().list_operations(dataset_name=dataset.name)
    assert ops and ops[-1].run_state == "completed"
    assert ops[-1].result.result["labeled"] == len(dataset)


def _form(uri, dataset, params=None):
    """The operator's resolved input form for `dataset` (what the App shows)."""
    from fiftyone.operators.executor import ExecutionContext

    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": params or {}})
    return foo.get_operator(uri).resolve_input(ctx).type.properties


def test_form_words_and_result_panel(dataset, checkpoint):
    """The refusal names the form's checkbox; the result has no error entry when none happened;
    the model config waits under the advanced options."""
    out = _run(AUTO, dataset, _params(checkpoint, concepts=["blob"], output_field="sam3"))
    assert "first_error" not in out and out["failed"] == 0
    with pytest.raises(Exception, match="tick 'Overwrite the output field if it exists'"):
        _run(AUTO, dataset, _params(checkpoint, concepts=["blob"], output_field="sam3"))

    op = foo.get_operator(AUTO)
    panel = op.resolve_output(type("Ctx", (), {"results": out})()).type.properties
    assert "first_error" not in panel and "labeled" in panel
    failed = {**out, "failed": 1, "first_error": "x.png: broken"}
    assert (
        "first_error" in op.resolve_output(type("Ctx", (), {"results": failed})()).type.properties
    )

    assert "config_name" not in _form(AUTO, dataset) and "ray" in _form(AUTO, dataset)
    assert "ray" in _form(EXEMPLARS, dataset)  # the exemplar operator runs a job too
    advanced = _form(AUTO, dataset, {"advanced": True})
    assert advanced["config_name"].default == "" and "workers" in advanced  # the checkpoint says


def test_track_offers_nothing_on_images(dataset):
    """On an image dataset the tracking form explains and cannot be submitted; no grid button."""
    from fiftyone.operators.executor import ExecutionContext

    track = "@sam3/fiftyone/track_videos"
    form = _form(track, dataset)
    assert "needs_videos" in form and form["video_dataset_required"].required
    assert "concepts" not in form
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name})
    assert foo.get_operator(track).resolve_placement(ctx) is None
    with pytest.raises(Exception, match="video_dataset_required"):  # the form's validation
        _run(track, dataset, {"concepts": ["blob"], "output_field": "tracks"})
