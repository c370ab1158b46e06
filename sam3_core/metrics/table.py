"""Matching done once, counts at any threshold: each pair's true positives for every number
of kept predictions, so that evaluating another threshold is a lookup, not a new matching."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sam3_core.metrics.cgf1 import cgf1_metrics
from sam3_core.metrics.data import Pair
from sam3_core.metrics.matching import IOU_THRESHOLDS, iou_matrix, topk_true_positives
from sam3_core.metrics.thresholds import Thresholds, concept_key


@dataclass
class PairTable:
    """P pairs, matched once, D predictions in all. concepts: names; concept: int [P] index
    into `concepts`; num_gt: int [P]; scores: float64 [D]; owner: int [D] the pair of each
    score; tp: int [D + P, T] the pairs' true positives for k = 0..D_p kept predictions,
    pair p's rows starting at offset[p]."""

    concepts: list[str]
    concept: np.ndarray
    num_gt: np.ndarray
    scores: np.ndarray
    owner: np.ndarray
    tp: np.ndarray
    offset: np.ndarray

    def __len__(self) -> int:
        return len(self.num_gt)

    def limits(self, thresholds: Thresholds | Sequence[float]) -> np.ndarray:
        """float64 [C]: each concept's threshold, from a Thresholds or one value per concept."""
        if isinstance(thresholds, Thresholds):
            return np.array([thresholds.for_concept(c) for c in self.concepts], dtype=np.float64)
        return np.asarray(thresholds, dtype=np.float64).reshape(len(self.concepts))

    def kept(self, thresholds: Thresholds | Sequence[float]) -> np.ndarray:
        """int [P]: how many predictions each pair keeps (score >= its concept's threshold)."""
        limit = self.limits(thresholds)[self.concept][self.owner]
        return np.bincount(self.owner[self.scores >= limit], minlength=len(self))

    def counts(self, kept: np.ndarray, select: np.ndarray | None = None):
        """(tp [P', T], num_dt [P'], num_gt [P']) for the selected pairs (bool [P] or None)."""
        idx = np.arange(len(self)) if select is None else np.flatnonzero(select)
        return self.tp[self.offset[idx] + kept[idx]], kept[idx], self.num_gt[idx]

    def metrics(self, kept: np.ndarray, select: np.ndarray | None = None) -> dict[str, float]:
        """SA-Co figures over the selected pairs, each keeping `kept` predictions."""
        return cgf1_metrics(*self.counts(kept, select))

    def of_concept(self, name: str) -> np.ndarray:
        """bool [P]: the pairs of concept `name`."""
        return self.concept == concept_index(self.concepts)[concept_key(name)]


def pair_table(pairs: Sequence[Pair], concepts: Sequence[str], iou_type: str = "segm") -> PairTable:
    """Match every pair once (IoU matrix, Hungarian assignment for each top-k)."""
    index = concept_index(concepts)
    topk = [topk_true_positives(iou_matrix(p, iou_type)) for p in pairs]
    sizes = np.array([len(t) for t in topk], dtype=np.int64)
    return PairTable(
        concepts=list(concepts),
        concept=np.array([index[concept_key(p.concept)] for p in pairs], dtype=np.int64),
        num_gt=np.array([p.num_gt for p in pairs], dtype=np.int64),
        scores=np.concatenate([p.scores for p in pairs] or [np.zeros(0)]),
        owner=np.repeat(np.arange(len(pairs)), sizes - 1),
        tp=np.concatenate(topk) if topk else np.zeros((0, len(IOU_THRESHOLDS)), np.int64),
        offset=np.cumsum(sizes) - sizes,
    )


def concept_index(concepts: Sequence[str]) -> dict[str, int]:
    """{compared name: position} of a concept list."""
    return {concept_key(c): i for i, c in enumerate(concepts)}
