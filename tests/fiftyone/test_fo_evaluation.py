"""Evaluating a prediction field against ground truth on a real dataset: SA-Co figures per
concept, calibrated thresholds kept in the dataset, and the operator's table and plot."""

from __future__ import annotations

import numpy as np
import pytest

fo = pytest.importorskip("fiftyone")

import fiftyone.operators as foo

from tests.fiftyone.helpers import AUTO, load_plugin_module

sam3_fiftyone = load_plugin_module()


def _det(label: str, rows: slice, cols: slice, size, score=None) -> fo.Detection:
    mask = np.zeros(size, bool)
    mask[rows, cols] = True
    det = fo.Detection.from_mask(mask, label=label)
    det.confidence = score
    return det


@pytest.fixture
def scored(dataset):
    """Each image: one 'blob' in gt (image 2: one 'dot' instead), found by the predictions at
    0.9, plus a wrong 'blob' at 0.3 on image 0 (a false positive a threshold above 0.3 drops)."""
    dataset.compute_metadata()
    for i, sample in enumerate(dataset):
        size = (sample.metadata.height, sample.metadata.width)
        label = "dot" if i == 2 else "blob"
        gt = [_det(label, slice(5, 20), slice(5, 25), size)]
        pred = [_det(label, slice(5, 20), slice(5, 25), size, 0.9)]
        if i == 0:
            pred.append(_det("blob", slice(30, 40), slice(30, 40), size, 0.3))
        sample["truth"] = fo.Detections(detections=gt)
        sample["pred"] = fo.Detections(detections=pred)
        sample.save()
    return dataset


def test_evaluate_at_a_threshold(scored):
    result = sam3_fiftyone.evaluate_view(scored, "pred", "truth", threshold=0.5)
    concepts = result.report["concepts"]
    # at 0.5 the 0.3 false positive is dropped: every pair is matched exactly, and every image
    # lacks one of the two concepts (true negatives), so IL_MCC = 1 and cgF1 = 100
    assert concepts["blob"]["cgF1"] == pytest.approx(100.0)
    assert concepts["dot"]["IL_MCC"] == pytest.approx(1.0)
    assert result.thresholds is None and "sam3_thresholds" not in scored.info
    low = sam3_fiftyone.evaluate_view(scored, "pred", "truth", threshold=0.2)
    # at 0.2 the false positive counts on a pair that has gt: pmF1 < 100 for 'blob'
    assert low.report["concepts"]["blob"]["pmF1"] < 100.0
    rows = {row["concept"]: row for row in low.table()}
    assert set(rows) == {"blob", "dot", "overall"} and rows["dot"]["cgF1"] == 100.0


def test_calibrate_keeps_thresholds_that_drop_the_false_positive(scored):
    from sam3_core.metrics import Thresholds

    result = sam3_fiftyone.evaluate_view(scored, "pred", "truth", calibrate=True)
    chosen = result.thresholds.for_concept("blob")
    assert 0.3 < chosen <= 0.9
    assert result.report["concepts"]["blob"]["cgF1"] == pytest.approx(100.0)
    kept = Thresholds.from_dict(scored.info["sam3_thresholds"]["pred"], where="dataset.info")
    assert kept.for_concept("blob") == pytest.approx(chosen)
    traces = result.plot_data()
    assert [t["name"] for t in traces] == ["all", "blob", "dot"]
    assert len(traces[0]["x"]) == len(traces[0]["y"]) > 2


def test_evaluate_operator_and_a_wrong_field(scored):
    result = foo.execute_operator(
        "@sam3/fiftyone/evaluate_labels",
        ctx={"dataset": scored.name, "params": {"pred_field": "pred", "gt_field": "truth"}},
    )
    result.raise_exceptions()
    out = result.result
    assert [row["concept"] for row in out["table"]] == ["blob", "dot", "overall"]
    assert out["plot"] and out["stored"].endswith("['pred']")
    scored.set_values("kind", [fo.Classification(label="x")] * len(scored))
    with pytest.raises(ValueError, match="not a Detections field"):
        sam3_fiftyone.evaluate_view(scored, "kind", "truth")


def test_calibrated_thresholds_flow_into_labeling(scored, checkpoint):
    from fiftyone.operators.executor import ExecutionContext

    sam3_fiftyone.evaluate_view(scored, "pred", "truth", calibrate=True)
    kept = scored.info["sam3_thresholds"]["pred"]
    kept["concepts"]["blob"] = 0.3  # the tiny model's scores lie around 0.3
    ctx = ExecutionContext(request_params={"dataset_name": scored.name, "params": {}})
    form = foo.get_operator(AUTO).resolve_input(ctx).type.properties
    assert "thresholds_from" in form  # the labeling form offers them
    params = {
        "concepts": ["blob"],
        "output_field": "calibrated",
        "checkpoint": checkpoint,
        "config_name": "sam3_tiny",
        "score_threshold": 0.0,
        "thresholds_from": "pred",
    }
    scored.info["sam3_thresholds"]["pred"] = kept
    scored.save()
    result = foo.execute_operator(AUTO, ctx={"dataset": scored.name, "params": params})
    result.raise_exceptions()
    scores = scored.values("calibrated.detections.confidence", unwind=True)
    assert scores and min(scores) >= 0.3  # the per-concept threshold replaced 0.0
    everything = sam3_fiftyone.label_view(
        scored, "all", ["blob"], checkpoint=checkpoint, config="sam3_tiny", score_threshold=0.0
    )
    assert everything.detections > len(scores)  # so the threshold did drop some
