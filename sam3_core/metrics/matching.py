"""One-to-one matching of predictions to ground truth in one (image, concept) pair.

As SA-Co's cgF1 (Meta's `sam3/eval/cgf1_eval.py`): IoU between every prediction and every
non-crowd ground-truth region (pycocotools), then a Hungarian assignment maximising the total
IoU (scipy); a matched prediction is a true positive at each IoU threshold it reaches.
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from sam3_core.metrics.data import Pair

# COCO's IoU thresholds 0.50:0.05:0.95, built as pycocotools builds them (so that an IoU on a
# boundary counts the same way as there)
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
IOU_TYPES = ("segm", "bbox")


def iou_matrix(pair: Pair, iou_type: str = "segm") -> np.ndarray:
    """float64 [D, G]: IoU of each prediction (score order) with each non-crowd gt region."""
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}; got {iou_type!r}")
    keep = np.flatnonzero(~pair.gt_crowd)
    num_dt = len(pair.scores)
    if num_dt == 0 or len(keep) == 0:
        return np.zeros((num_dt, len(keep)))
    if iou_type == "segm":
        dt, gt = pair.dt_rles, [pair.gt_rles[i] for i in keep]
    else:
        dt, gt = pair.dt_boxes.tolist(), pair.gt_boxes[keep].tolist()
    ious = mask_utils.iou(dt, gt, [0] * len(gt))
    return np.asarray(ious, dtype=np.float64).reshape(num_dt, len(keep))


def matched_ious(ious: np.ndarray) -> np.ndarray:
    """IoUs of the Hungarian assignment (maximum total IoU) of rows to columns of `ious`."""
    if ious.size == 0:
        return np.zeros(0)
    rows, cols = linear_sum_assignment(-ious)
    return ious[rows, cols]


def true_positives(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """int64 [T]: predictions matched at IoU >= each threshold (one-to-one)."""
    matched = matched_ious(ious)
    return (matched[None, :] >= thresholds[:, None]).sum(axis=1).astype(np.int64)


def topk_true_positives(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """int64 [D + 1, T]: true positives when only the k best-scored predictions are kept,
    k = 0..D (rows of `ious` in score order); one assignment per k, as a threshold between
    the k-th and (k+1)-th score would give."""
    out = np.zeros((ious.shape[0] + 1, len(thresholds)), dtype=np.int64)
    if ious.shape[1] == 0:
        return out
    for k in range(1, ious.shape[0] + 1):
        out[k] = true_positives(ious[:k], thresholds)
    return out
