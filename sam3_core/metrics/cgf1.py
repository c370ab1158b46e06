"""SA-Co's metrics from per-pair counts (the SAM 3 paper; Meta's `sam3/eval/cgf1_eval.py`).

Per (image, concept) pair with G ground-truth regions and D kept predictions, at each IoU
threshold t in 0.50:0.95: TP = matched predictions with IoU >= t, FP = D - TP, FN = G - TP.
Image level: IL_TP (G > 0, D > 0), IL_FP (G = 0, D > 0), IL_TN (G = 0, D = 0), IL_FN (G > 0,
D = 0). Summed over pairs:
  precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = their harmonic mean;
  pmF1 (positive micro F1): F1 from TP, FN and only the FPs of IL_TP pairs (pairs where both
  ground truth and predictions exist), so wrong detections on negative pairs count once, in
  IL_MCC, not twice; positive_macro_F1: the mean of per-pair F1 over IL_TP pairs;
  IL_MCC: Matthews correlation of the image-level counts;
  cgF1 = pmF1 x IL_MCC.
Figures are reported averaged over the IoU thresholds and at 0.5 and 0.75; cgF1, pmF1, F1,
precision and recall in percent, the IL_* figures as fractions (as the paper's tables).
Where a denominator is 0 the figure is 0 (Meta adds 1e-4 or 1e-6 to every denominator
instead, which moves its figures by under 0.01 points; a perfect result reads 100 here).
"""

from __future__ import annotations

import numpy as np

from sam3_core.metrics.matching import IOU_THRESHOLDS

PERCENT_METRICS = (
    "cgF1",
    "pmF1",
    "positive_macro_F1",
    "positive_micro_precision",
    "F1",
    "precision",
    "recall",
)
AT_IOU = (0.5, 0.75)


def divide(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den, 0 where den == 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def harmonic(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """2pr / (p + r), 0 where both are 0."""
    return divide(2 * p * r, p + r)


def mcc(tp: int, fp: int, tn: int, fn: int) -> float:
    """Matthews correlation coefficient of binary counts (0 when undefined)."""
    den = float(tp + fp) * float(tp + fn) * float(tn + fp) * float(tn + fn)
    return float((tp * tn - fp * fn) / den**0.5) if den > 0 else 0.0


def cgf1_metrics(tp: np.ndarray, num_dt: np.ndarray, num_gt: np.ndarray) -> dict[str, float]:
    """Every figure from P pairs' counts: tp int [P, T] true positives per IoU threshold
    (IOU_THRESHOLDS), num_dt int [P] kept predictions, num_gt int [P] ground-truth regions."""
    tp = np.asarray(tp, dtype=np.int64).reshape(len(num_dt), len(IOU_THRESHOLDS))
    num_dt = np.asarray(num_dt, dtype=np.int64)
    num_gt = np.asarray(num_gt, dtype=np.int64)
    fp = num_dt[:, None] - tp
    fn = num_gt[:, None] - tp
    has_gt, has_dt = num_gt > 0, num_dt > 0
    il_tp = int((has_gt & has_dt).sum())
    il_fp = int((~has_gt & has_dt).sum())
    il_tn = int((~has_gt & ~has_dt).sum())
    il_fn = int((has_gt & ~has_dt).sum())
    positive = has_gt & has_dt

    sum_tp, sum_fp, sum_fn = tp.sum(0), fp.sum(0), fn.sum(0)
    sum_pm_fp = fp[positive].sum(0)
    precision = divide(sum_tp, sum_tp + sum_fp)
    recall = divide(sum_tp, sum_tp + sum_fn)
    pm_precision = divide(sum_tp, sum_tp + sum_pm_fp)
    pm_f1 = harmonic(pm_precision, recall)
    local_f1 = harmonic(divide(tp, tp + fp), divide(tp, tp + fn))[positive]
    macro_f1 = local_f1.mean(0) if len(local_f1) else np.zeros(len(IOU_THRESHOLDS))
    il_mcc = mcc(il_tp, il_fp, il_tn, il_fn)
    il_precision = float(divide(il_tp, il_tp + il_fp))
    il_recall = float(divide(il_tp, il_tp + il_fn))
    per_iou = {
        "cgF1": pm_f1 * il_mcc,
        "pmF1": pm_f1,
        "positive_macro_F1": macro_f1,
        "positive_micro_precision": pm_precision,
        "F1": harmonic(precision, recall),
        "precision": precision,
        "recall": recall,
    }
    out: dict[str, float] = {}
    for name, values in per_iou.items():
        out[name] = 100.0 * float(values.mean())
        for t in AT_IOU:
            out[f"{name}@{t}"] = 100.0 * float(values[iou_index(t)])
    out.update(
        IL_MCC=il_mcc,
        IL_precision=il_precision,
        IL_recall=il_recall,
        IL_F1=float(harmonic(np.float64(il_precision), np.float64(il_recall))),
        IL_FPR=float(divide(il_fp, il_fp + il_tn)),
        IL_TP=il_tp,
        IL_FP=il_fp,
        IL_TN=il_tn,
        IL_FN=il_fn,
    )
    for t in AT_IOU:
        i = iou_index(t)
        out.update(
            {f"TP@{t}": int(sum_tp[i]), f"FP@{t}": int(sum_fp[i]), f"FN@{t}": int(sum_fn[i])}
        )
    out.update(pairs=len(num_dt), gt=int(num_gt.sum()), pred=int(num_dt.sum()))
    return out


def iou_index(t: float) -> int:
    """The index of IoU threshold `t` in IOU_THRESHOLDS."""
    return AT_INDEX[t] if t in AT_INDEX else int(np.argmin(np.abs(IOU_THRESHOLDS - t)))


AT_INDEX = {t: int(np.argmin(np.abs(IOU_THRESHOLDS - t))) for t in AT_IOU}
