"""The evaluation report: SA-Co figures and COCO AP per concept and over all pairs."""

from __future__ import annotations

from collections.abc import Sequence

from sam3_core.metrics.coco_ap import coco_ap
from sam3_core.metrics.data import EvalSet, Pair
from sam3_core.metrics.table import PairTable, pair_table
from sam3_core.metrics.thresholds import Thresholds


def as_thresholds(thresholds: Thresholds | float | None) -> Thresholds:
    """A Thresholds from a Thresholds, one value for all concepts, or None (0.5, the paper's)."""
    if thresholds is None:
        return Thresholds()
    if isinstance(thresholds, Thresholds):
        return thresholds
    return Thresholds.uniform(thresholds)


def table_report(table: PairTable, thresholds: Thresholds) -> dict:
    """{"concepts": {name: figures}, "overall": figures} at `thresholds` (no AP)."""
    kept = table.kept(thresholds)
    concepts = {}
    for name in table.concepts:
        figures = table.metrics(kept, table.of_concept(name))
        concepts[name] = {**figures, "threshold": thresholds.for_concept(name)}
    return {"concepts": concepts, "overall": table.metrics(kept)}


def full_report(
    pairs: Sequence[Pair], table: PairTable, thresholds: Thresholds, ap: bool = True
) -> dict:
    """`table_report` plus COCO mask and box AP of the same pairs (when `ap`)."""
    report = table_report(table, thresholds)
    if ap:
        per, overall = coco_ap(pairs, table.concepts)
        for name, values in per.items():
            report["concepts"][name].update(values)
        report["overall"].update(overall)
    report["thresholds"] = thresholds.to_dict()
    return report


def evaluate(
    evalset: EvalSet,
    thresholds: Thresholds | float | None = None,
    iou_type: str = "segm",
    ap: bool = True,
) -> dict:
    """Every figure per concept and overall (all pairs pooled), predictions kept at score >=
    their concept's threshold (default 0.5): {"concepts": {name: {"cgF1", "pmF1", "IL_MCC",
    ...}}, "overall": {...}}. iou_type: "segm" (masks) or "bbox" for the SA-Co figures;
    ap: add COCO mask and box AP (threshold-free)."""
    pairs = evalset.pairs()
    table = pair_table(pairs, evalset.concepts, iou_type)
    report = full_report(pairs, table, as_thresholds(thresholds), ap)
    report.update(iou_type=iou_type, skipped_predictions=evalset.skipped)
    return report
