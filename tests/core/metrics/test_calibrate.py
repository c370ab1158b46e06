"""Calibration picks the known optimum on synthetic scores, per concept."""

from __future__ import annotations

import numpy as np
import pytest

from sam3_core.metrics import EvalSet, Thresholds, calibrate, evaluate, sweep
from sam3_core.metrics.calibration import midpoint
from sam3_core.metrics.table import pair_table
from tests.core.metrics.helpers import gt, pred, rect

A = rect(0, 0, 10, 10)
B = rect(10, 10, 20, 20)


def separable_set() -> EvalSet:
    """cat: found on im0..im4 at 0.60..0.95, false alarms on im5..im9 at 0.10..0.40 -> any
    threshold in (0.40, 0.60] is perfect; the midpoint 0.5 is chosen. dog: found on im5..im9
    at 0.80..0.92, false alarms on im0..im4 at 0.55..0.70 -> (0.70, 0.80], midpoint 0.75."""
    es = EvalSet(["cat", "dog"])
    cat_tp = [0.6, 0.7, 0.8, 0.9, 0.95]
    cat_fp = [0.1, 0.2, 0.3, 0.35, 0.4]
    dog_tp = [0.8, 0.83, 0.86, 0.9, 0.92]
    dog_fp = [0.55, 0.6, 0.65, 0.68, 0.7]
    for i in range(5):
        es.add_image(
            f"im{i}",
            (20, 20),
            gt=[gt("cat", A)],
            pred=[pred("cat", A, cat_tp[i]), pred("dog", B, dog_fp[i])],
            exhaustive=True,
        )
    for i in range(5):
        es.add_image(
            f"im{i + 5}",
            (20, 20),
            gt=[gt("dog", B)],
            pred=[pred("dog", B, dog_tp[i]), pred("cat", A, cat_fp[i])],
            exhaustive=True,
        )
    return es


def test_separable_optimum_per_concept():
    th, curves = calibrate(separable_set(), metric="cgF1")
    assert th.concepts == {"cat": 0.5, "dog": 0.75}
    assert th.metric == "cgF1" and th.default == 0.5
    report = evaluate(separable_set(), th, ap=False)
    assert report["concepts"]["cat"]["cgF1"] == pytest.approx(100.0)
    assert report["concepts"]["dog"]["cgF1"] == pytest.approx(100.0)
    # at the paper's 0.5 for all, dog keeps its five false alarms: IL_FP=5, IL_TP=5,
    # IL_TN=0 -> MCC 0 -> cgF1 0
    assert evaluate(separable_set(), 0.5, ap=False)["concepts"]["dog"]["cgF1"] == 0.0
    # the curves: at 0.5 overall (dog's FPs kept) is below 100, at 0.75 cat loses nothing
    i50, i75 = (int(np.argmin(np.abs(curves.grid - t))) for t in (0.5, 0.75))
    assert curves.concepts["cat"]["cgF1"][i50] == pytest.approx(100.0)
    assert curves.concepts["dog"]["cgF1"][i75] == pytest.approx(100.0)
    assert curves.overall["cgF1"][i50] < 100.0


def noisy_set(seed: int) -> EvalSet:
    """One concept, overlapping score distributions: positives ~ U(0.3, 1), false alarms on
    negatives ~ U(0, 0.7), some duplicates on positives ~ U(0, 0.6)."""
    rng = np.random.default_rng(seed)
    es = EvalSet(["cat"])
    for i in range(40):
        positive = i % 2 == 0
        preds = []
        if positive:
            if rng.random() < 0.9:
                preds.append(pred("cat", A, float(rng.uniform(0.3, 1.0))))
            if rng.random() < 0.3:
                preds.append(pred("cat", A, float(rng.uniform(0.0, 0.6))))
        elif rng.random() < 0.6:
            preds.append(pred("cat", B, float(rng.uniform(0.0, 0.7))))
        es.add_image(
            f"im{i}", (20, 20), gt=[gt("cat", A)] if positive else [], pred=preds, exhaustive=True
        )
    return es


@pytest.mark.parametrize(("seed", "metric"), [(0, "cgF1"), (1, "cgF1"), (2, "F1")])
def test_noisy_optimum_matches_brute_force(seed, metric):
    # Brute force: evaluate (matching anew each time) at every midpoint between consecutive
    # distinct scores and above the best; calibration's pick must reach the best value.
    es = noisy_set(seed)
    th, _ = calibrate(es, metric=metric)
    scores = np.unique(pair_table(es.pairs(), es.concepts).scores)
    cuts = [*(0.5 * (scores[1:] + scores[:-1])), scores[0], (scores[-1] + 1) / 2]
    best = max(evaluate(es, float(t), ap=False)["overall"][metric] for t in cuts)
    got = evaluate(es, th, ap=False)["overall"][metric]
    assert got == pytest.approx(best)
    assert 0 < th.for_concept("cat") < 1
    assert got > evaluate(es, 0.0, ap=False)["overall"][metric]  # better than keeping all


def test_concept_without_predictions_keeps_default_and_no_gt_keeps_none():
    # "owl" has no predictions: not in the file (default applies); "dog" has only false
    # alarms (best 0.7): any kept prediction is wrong -> keep none: (0.7 + 1) / 2 = 0.85.
    es = EvalSet(["cat", "dog", "owl"])
    es.add_image(
        "im0",
        (20, 20),
        gt=[gt("cat", A)],
        pred=[pred("cat", A, 0.9), pred("dog", B, 0.7)],
        exhaustive=True,
    )
    es.add_image("im1", (20, 20), exhaustive=True)
    th, _ = calibrate(es, default=0.4)
    assert "owl" not in th.concepts and th.for_concept("owl") == 0.4
    assert th.for_concept("dog") == pytest.approx(0.85)


def test_sweep_grid_and_midpoint():
    table = pair_table(separable_set().pairs(), ["cat", "dog"])
    curves = sweep(table, grid=[0.0, 0.5, 1.0])
    # at 1.0 nothing is kept: all 10 positive pairs missed -> cgF1 0; at 0.0 all kept
    assert curves.overall["cgF1"][2] == 0.0 and curves.overall["IL_MCC"][2] == 0.0
    assert set(curves.concepts) == {"cat", "dog"}
    assert midpoint(0.6, 0.4) == 0.5 and midpoint(0.50002, 0.50001) == pytest.approx(0.500015)
    assert isinstance(Thresholds().for_concept("x"), float)


def test_a_metric_flat_in_the_threshold_lets_f1_choose():
    """bird is on every image (no negative pairs), so IL_TN = IL_FP = 0, IL_MCC = 0 and cgF1 is
    0 at every threshold. Before, 'keep none' won that tie and wrote a threshold above every
    prediction; now F1 chooses: hits at 0.9 and 0.8, false alarms at 0.3 -> F1 is 100 for any
    threshold in (0.3, 0.8], the midpoint 0.55 is written."""
    es = EvalSet(["bird"])
    for i, hit in enumerate([0.9, 0.8]):
        es.add_image(
            f"im{i}",
            (20, 20),
            gt=[gt("bird", A)],
            pred=[pred("bird", A, hit), pred("bird", B, 0.3)],
            exhaustive=True,
        )
    th, _ = calibrate(es, metric="cgF1")
    assert th.for_concept("bird") == pytest.approx(0.55)
    assert evaluate(es, th, ap=False)["concepts"]["bird"]["F1"] == pytest.approx(100.0)
