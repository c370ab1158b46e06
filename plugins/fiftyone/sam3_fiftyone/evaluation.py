"""How good a prediction field is against a ground-truth field: SA-Co metrics per concept
(`sam3_core.metrics`), optionally per-concept score thresholds calibrated on the view and kept
in the dataset's info for later labeling runs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

import fiftyone.core.labels as fol

INFO_KEY = "sam3_thresholds"  # dataset.info[INFO_KEY][prediction field] = thresholds dict
TABLE_COLUMNS = ("concept", "cgF1", "pmF1", "IL_MCC", "AP_mask", "threshold", "gt", "pred")


@dataclass
class Evaluation:
    """A view's evaluation: `report` as `sam3_core.metrics.evaluation` gives it, the calibrated
    `thresholds` (None unless asked) and the `curves` of each figure against one threshold."""

    report: dict
    thresholds: Any
    curves: Any

    def table(self) -> list[dict]:
        """One row per concept (then "overall"): cgF1, pmF1 and AP in percent, IL_MCC."""
        rows = {**self.report["concepts"], "overall": self.report["overall"]}
        return [
            {"concept": name, **{k: round_or_none(figures.get(k)) for k in TABLE_COLUMNS[1:]}}
            for name, figures in rows.items()
        ]

    def plot_data(self, metric: str = "cgF1") -> list[dict]:
        """Plotly traces: `metric` against the score threshold, overall and per concept."""
        grid = [float(t) for t in self.curves.grid]
        traces = [{"x": grid, "y": list(map(float, self.curves.overall[metric])), "name": "all"}]
        for name, figures in self.curves.concepts.items():
            traces.append({"x": grid, "y": list(map(float, figures[metric])), "name": name})
        return [{"type": "scatter", "mode": "lines", **t} for t in traces]


def round_or_none(value):
    """Floats to 3 decimals for display; other values as they are."""
    return round(float(value), 3) if isinstance(value, (float, np.floating)) else value


def evaluate_view(
    samples,
    pred_field: str,
    gt_field: str,
    *,
    exhaustive: bool = True,
    threshold: float = 0.5,
    calibrate: bool = False,
    metric: str = "cgF1",
    keep_thresholds: bool = True,
) -> Evaluation:
    """Evaluate the Detections of `pred_field` against `gt_field` on the images of `samples`.

    exhaustive: the ground truth lists every instance of every concept on each sample that has
    it (a concept absent there is a true negative); else only the concepts present in an
    image's ground truth are scored on it. calibrate: choose per concept the threshold that
    maximises `metric` ("cgF1" or "F1") and report at those thresholds (else at `threshold`);
    keep_thresholds stores them in `dataset.info["sam3_thresholds"][pred_field]`.
    """
    from sam3_core.metrics import EvalSet, evaluate, sweep
    from sam3_core.metrics import calibrate as calibrate_thresholds
    from sam3_core.metrics.table import pair_table

    check_fields(samples, (pred_field, gt_field))
    evalset = EvalSet()
    samples.compute_metadata()  # image sizes, to place the box-cropped masks
    view = samples.select_fields([pred_field, gt_field, "metadata"])
    for sample in view.exists(gt_field):
        size = (sample.metadata.height, sample.metadata.width)
        evalset.add_image(
            sample.id,
            size,
            gt=regions(sample[gt_field], size),
            pred=regions(sample[pred_field], size, scored=True),
            exhaustive=exhaustive,
        )
    if not evalset.images:
        raise ValueError(f"No sample of this view has '{gt_field}' set: label some first.")
    thresholds, curves = None, None
    if calibrate:
        source = {"dataset": samples._dataset.name, "gt": gt_field, "pred": pred_field}
        thresholds, curves = calibrate_thresholds(evalset, metric=metric, source=source)
    else:  # sweep takes the matched table, not the EvalSet
        curves = sweep(pair_table(evalset.pairs(), evalset.concepts))
    report = evaluate(evalset, thresholds=thresholds or float(threshold))
    if thresholds is not None and keep_thresholds:
        info = samples._dataset.info
        info.setdefault(INFO_KEY, {})[pred_field] = thresholds.to_dict()
        samples._dataset.save()
    return Evaluation(report, thresholds, curves)


def check_fields(samples, fields: Iterable[str]) -> None:
    """Raise unless each field holds Detections on this dataset."""
    schema = samples._dataset.get_field_schema(embedded_doc_type=fol.Detections)
    for field in fields:
        if field not in schema:
            raise ValueError(
                f"'{field}' is not a Detections field of dataset '{samples._dataset.name}': "
                f"choose one of {sorted(schema) or 'its Detections fields (it has none)'}."
            )


def regions(dets: fol.Detections | None, size: tuple[int, int], scored: bool = False):
    """Detections -> `sam3_core.metrics` regions: concept, full-image mask as COCO RLE (or the
    box when a detection has no mask), score (a missing confidence counts as 1)."""
    from sam3_core.postprocess import mask_to_rle

    height, width = size
    out = []
    for det in [] if dets is None else dets.detections:
        x, y, w, h = det.bounding_box
        region = {"concept": det.label, "bbox": [x * width, y * height, w * width, h * height]}
        mask = det.get_mask()
        if mask is not None:
            x0, y0 = round(x * width), round(y * height)
            crop = np.asarray(mask, bool)[: height - y0, : width - x0]
            full = np.zeros(size, bool)
            full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
            region["segmentation"] = mask_to_rle(full)
        if scored:
            region["score"] = 1.0 if det.confidence is None else float(det.confidence)
        out.append(region)
    return out
