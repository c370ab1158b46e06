"""Embeddings computed once into a store folder, then read by every labeling path."""

from __future__ import annotations

import pytest

fo = pytest.importorskip("fiftyone")

import fiftyone.operators as foo

from tests.fiftyone.helpers import AUTO, load_plugin_module

sam3_fiftyone = load_plugin_module()
MODEL = {"device": "cpu", "batch_size": 2}  # the checkpoint says its config


def _detections(dataset, field):
    """(label, box, mask pixels) and the scores of each sample's detections."""
    found = [s[field].detections for s in dataset.select_fields(field)]
    exact = [[(d.label, tuple(d.bounding_box), int(d.mask.sum())) for d in dets] for dets in found]
    return exact, [[d.confidence for d in dets] for dets in found]


def _same(got, want) -> None:
    """Same labels, boxes and masks; scores within 1e-5 (the store's trunk-then-neck path moves
    fp32 scores by ~4e-7 on the tiny model)."""
    assert got[0] == want[0]
    for a, b in zip(got[1], want[1]):
        assert a == pytest.approx(b, abs=1e-5)


def test_precompute_then_resume(dataset, checkpoint, tmp_path):
    store = tmp_path / "store"
    report = sam3_fiftyone.precompute_embeddings(dataset, store, checkpoint=checkpoint, **MODEL)
    n = len(dataset)
    assert (report.stored, report.skipped, report.failed, report.entries) == (n, 0, 0, n)
    assert report.mb_per_image > 0 and "first_error" not in report.as_dict()
    again = sam3_fiftyone.precompute_embeddings(dataset, store, checkpoint=checkpoint, **MODEL)
    assert (again.stored, again.skipped, again.entries) == (0, n, n)


def test_labeling_reads_the_store_and_gives_the_same_labels(dataset, checkpoint, tmp_path):
    store = tmp_path / "store"
    concepts = ["blob", "stripe"]
    settings = {"checkpoint": checkpoint, "score_threshold": 0.0, **MODEL}
    sam3_fiftyone.label_view(dataset, "plain", concepts, **settings)
    sam3_fiftyone.label_view(dataset, "stored", concepts, store=store, **settings)
    _same(_detections(dataset, "stored"), _detections(dataset, "plain"))
    from sam3_core.store import EmbeddingStore

    assert len(EmbeddingStore(store)) == len(dataset)  # the job's workers filled the store

    config = {
        "checkpoint": checkpoint,
        "device": "cpu",
        "classes": concepts,
        "confidence_thresh": 0.0,
        "store": str(store),
    }
    model = sam3_fiftyone.Sam3Model(config)
    dataset.apply_model(model, label_field="model_stored", batch_size=2)
    stats = model.predictor.store.stats
    assert stats["disk_hits"] + stats["memory_hits"] >= len(dataset) and not stats["misses"]
    _same(_detections(dataset, "model_stored"), _detections(dataset, "plain"))


def test_compute_embeddings_operator_sets_the_forms_default(dataset, checkpoint, tmp_path):
    from fiftyone.operators.executor import ExecutionContext

    store = str(tmp_path / "op-store")
    params = {"store": store, "checkpoint": checkpoint}
    result = foo.execute_operator(
        "@sam3/fiftyone/compute_embeddings", ctx={"dataset": dataset.name, "params": params}
    )
    result.raise_exceptions()
    assert result.result["stored"] == len(dataset) and result.result["failed"] == 0
    ctx = ExecutionContext(request_params={"dataset_name": dataset.name, "params": {}})
    form = foo.get_operator(AUTO).resolve_input(ctx).type.properties
    assert form["store"].default == store  # the labeling forms now read that store
