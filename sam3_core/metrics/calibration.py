"""Per-concept score thresholds that maximise cgF1 (or F1) on a labelled set, and the
metrics-against-threshold curves the plot draws.

The figures only change where the threshold crosses a prediction's score, so each concept's
candidates are its distinct scores (keep every prediction scoring at least s) plus one above
its best score (keep none). The best candidate wins, the highest on ties (fewer predictions
for the same figure); the threshold written is the midpoint between that score and the next
lower one, so small score shifts (another machine, precision) do not flip a decision.
Predictions must come from a run at a threshold below the ones worth trying (e.g. 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sam3_core.metrics.cgf1 import cgf1_metrics
from sam3_core.metrics.data import EvalSet
from sam3_core.metrics.table import PairTable, pair_table
from sam3_core.metrics.thresholds import METRICS, Thresholds

CURVE_METRICS = ("cgF1", "pmF1", "IL_MCC", "F1", "precision", "recall")
MAX_CANDIDATES = 500


@dataclass
class Curves:
    """Figures against a threshold used for every concept. grid: float64 [K]; overall:
    metric -> float64 [K] (all pairs); concepts: name -> metric -> float64 [K]."""

    grid: np.ndarray
    overall: dict[str, np.ndarray]
    concepts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def sweep(table: PairTable, grid: Sequence[float] | None = None) -> Curves:
    """The figures of CURVE_METRICS at each threshold of `grid` (default 0.00:0.01:1.00 from
    the lowest predicted score, rounded down), overall and per concept."""
    if grid is None:
        low = np.floor(100 * table.scores.min()) / 100 if len(table.scores) else 0.0
        grid = np.round(np.arange(low, 1.0 + 1e-9, 0.01), 2)
    grid = np.asarray(grid, dtype=np.float64)
    overall = {m: np.zeros(len(grid)) for m in CURVE_METRICS}
    concepts = {c: {m: np.zeros(len(grid)) for m in CURVE_METRICS} for c in table.concepts}
    selects = {c: table.of_concept(c) for c in table.concepts}
    for i, t in enumerate(grid):
        kept = table.kept([t] * len(table.concepts))
        for m, v in table.metrics(kept).items():
            if m in overall:
                overall[m][i] = v
        for c, select in selects.items():
            for m, v in table.metrics(kept, select).items():
                if m in CURVE_METRICS:
                    concepts[c][m][i] = v
    return Curves(grid=grid, overall=overall, concepts=concepts)


def best_threshold(table: PairTable, concept: str, metric: str) -> tuple[float, float] | None:
    """(threshold, figure) maximising `metric` for one concept; None if it has no predictions.
    Where `metric` is the same at every threshold (cgF1 is 0 everywhere for a concept on every
    image: IL_MCC is 0), F1 chooses instead; where that is flat too, the highest threshold wins.
    At most MAX_CANDIDATES distinct scores are tried (evenly spaced by rank)."""
    pairs = np.flatnonzero(table.of_concept(concept))
    mine = np.isin(table.owner, pairs)
    scores = table.scores[mine]
    if not len(scores):
        return None
    local = np.searchsorted(pairs, table.owner[mine])  # pair index within the concept
    distinct = np.unique(scores)[::-1]  # high first
    thinned = len(distinct) > MAX_CANDIDATES
    if thinned:
        distinct = distinct[np.linspace(0, len(distinct) - 1, MAX_CANDIDATES).round().astype(int)]
    candidates = [min(1.0, float(distinct[0]) + 1e-9), *distinct.tolist()]
    base, num_gt = table.offset[pairs], table.num_gt[pairs]
    figures = []
    for t in candidates:
        kept = np.bincount(local[scores >= t], minlength=len(pairs))
        figures.append(cgf1_metrics(table.tp[base + kept], kept, num_gt))
    values = [f[metric] for f in figures]
    if max(values) == min(values):  # the metric cannot choose: F1 does
        values = [f["F1"] for f in figures]
    best = int(np.argmax(values))  # first maximum: the highest threshold on ties
    if best == 0:  # keep none: halfway between the best score and 1
        threshold = midpoint(1.0, float(distinct[0])) if distinct[0] < 1.0 else 1.0
    elif best == len(distinct) or thinned:  # the score itself (scores between were not tried)
        threshold = float(distinct[best - 1])
    else:
        threshold = midpoint(float(distinct[best - 1]), float(distinct[best]))
    return threshold, float(values[best])


def midpoint(high: float, low: float) -> float:
    """A round number in (low, high] near their middle (4 decimals when that fits)."""
    middle = (high + low) / 2
    rounded = round(middle, 4)
    return rounded if low < rounded <= high else middle


def calibrate(
    evalset: EvalSet,
    metric: str = "cgF1",
    iou_type: str = "segm",
    default: float = 0.5,
    source: object = None,
) -> tuple[Thresholds, Curves]:
    """(per-concept Thresholds maximising `metric` ("cgF1" or "F1", averaged over IoU
    0.50:0.95), the curves of the figures against one threshold for all). Concepts without
    predictions keep `default`."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    table = pair_table(evalset.pairs(), evalset.concepts, iou_type)
    return calibrate_table(table, metric, default, source), sweep(table)


def calibrate_table(
    table: PairTable, metric: str = "cgF1", default: float = 0.5, source: object = None
) -> Thresholds:
    """Per-concept Thresholds maximising `metric` on an already matched table."""
    chosen: dict[str, float] = {}
    for concept in table.concepts:
        best = best_threshold(table, concept, metric)
        if best is not None:
            chosen[concept] = best[0]
    return Thresholds(default=default, concepts=chosen, metric=metric, source=source)
