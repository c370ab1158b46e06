"""SA-Co figures on hand-built cases; the expected numbers are worked out in the comments.

Images are 20x20; "A" is the 10x10 square at the top left (100 px), "B" the one at the bottom
right; every image is exhaustively labelled unless a test says otherwise. Figures in percent
except IL_*; averages over the 10 IoU thresholds 0.50, 0.55, ..., 0.95.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam3_core.metrics import EvalSet, evaluate
from sam3_core.metrics.cgf1 import cgf1_metrics, mcc
from tests.core.metrics.helpers import gt, pred, rect

A = rect(0, 0, 10, 10)
B = rect(10, 10, 20, 20)


def run(images, concepts=("cat", "dog"), **kwargs) -> dict:
    """evaluate() without AP over [(gt regions, pred regions, exhaustive), ...]."""
    es = EvalSet(concepts=list(concepts))
    for i, (g, p, exhaustive) in enumerate(images):
        es.add_image(f"im{i}", (20, 20), gt=g, pred=p, exhaustive=exhaustive)
    return evaluate(es, ap=False, **kwargs)


def test_perfect():
    # im0: cat A, cat B both found; im1: dog A found. Pairs: (im0, cat) TP=2, (im0, dog) TN,
    # (im1, cat) TN, (im1, dog) TP=1 -> IL_TP=2, IL_TN=2 -> MCC = 2*2/sqrt(2*2*2*2) = 1;
    # pmF1 = 1 at every IoU -> cgF1 = 100.
    r = run(
        [
            ([gt("cat", A), gt("cat", B)], [pred("cat", A, 0.9), pred("cat", B, 0.8)], True),
            ([gt("dog", A)], [pred("dog", A, 0.7)], True),
        ]
    )
    o = r["overall"]
    assert (o["IL_TP"], o["IL_FP"], o["IL_TN"], o["IL_FN"]) == (2, 0, 2, 0)
    assert o["IL_MCC"] == pytest.approx(1.0)
    assert o["cgF1"] == pytest.approx(100.0) and o["pmF1"] == pytest.approx(100.0)
    assert o["cgF1@0.75"] == pytest.approx(100.0)
    assert (o["TP@0.5"], o["FP@0.5"], o["FN@0.5"]) == (3, 0, 0)
    assert r["concepts"]["cat"]["pairs"] == 2 and r["concepts"]["cat"]["gt"] == 2


def test_empty_predictions():
    # Same labels, no predictions: IL_FN=2, IL_TN=2, IL_TP=IL_FP=0 -> MCC's denominator has
    # (TP+FP)=0 -> 0; TP=0 -> pmF1=0, recall 0; FN@0.5 = 3 instances missed.
    r = run([([gt("cat", A), gt("cat", B)], [], True), ([gt("dog", A)], [], True)])
    o = r["overall"]
    assert (o["IL_TP"], o["IL_FP"], o["IL_TN"], o["IL_FN"]) == (0, 0, 2, 2)
    assert o["IL_MCC"] == 0.0 and o["cgF1"] == 0.0 and o["pmF1"] == 0.0 and o["recall"] == 0.0
    assert o["FN@0.5"] == 3 and o["pred"] == 0


def test_empty_ground_truth():
    # No labels at all on 2 exhaustive images -> 4 negative pairs; one cat prediction on im0:
    # IL_FP=1, IL_TN=3 -> IL_FPR = 1/4; no positive pair -> pmF1 = 0, MCC = 0 (TP+FN = 0),
    # precision = 0/(0+1) = 0.
    r = run([([], [pred("cat", A, 0.9)], True), ([], [], True)])
    o = r["overall"]
    assert (o["IL_TP"], o["IL_FP"], o["IL_TN"], o["IL_FN"]) == (0, 1, 3, 0)
    assert o["IL_FPR"] == pytest.approx(0.25)
    assert o["cgF1"] == 0.0 and o["pmF1"] == 0.0 and o["precision"] == 0.0
    assert r["concepts"]["cat"]["IL_FP"] == 1 and r["concepts"]["dog"]["IL_FP"] == 0


def test_duplicates():
    # im0: cat A predicted twice; im1: nothing (TN for cat). One concept.
    # (im0, cat): Hungarian matches one copy: TP=1, FP=1, FN=0 at every IoU.
    # pm precision 1/2, recall 1 -> pmF1 = 2*(1/2)/(3/2) = 2/3; IL_TP=1, IL_TN=1 -> MCC 1
    # -> cgF1 = 66.67; positive_macro_F1 the same (one positive pair).
    r = run(
        [([gt("cat", A)], [pred("cat", A, 0.9), pred("cat", A, 0.8)], True), ([], [], True)],
        concepts=("cat",),
    )
    o = r["overall"]
    assert (o["TP@0.5"], o["FP@0.5"], o["FN@0.5"]) == (1, 1, 0)
    assert o["pmF1"] == pytest.approx(200 / 3)
    assert o["cgF1"] == pytest.approx(200 / 3)
    assert o["positive_macro_F1"] == pytest.approx(200 / 3)


def test_miss_at_one_iou_threshold_only():
    # The prediction is A less 7 pixels: IoU 93/100 = 0.93 -> a TP at 0.50..0.90 (9
    # thresholds) and FP+FN at 0.95 only. pmF1 per threshold: 1 x9, 0 x1 -> mean 90;
    # at 0.5 and 0.75: 100. im1 is a TN -> MCC 1 -> cgF1 = 90.
    almost = A.copy()
    almost[0, :7] = False
    r = run([([gt("cat", A)], [pred("cat", almost, 0.9)], True), ([], [], True)], ("cat",))
    o = r["overall"]
    assert o["pmF1"] == pytest.approx(90.0)
    assert o["pmF1@0.5"] == pytest.approx(100.0) and o["pmF1@0.75"] == pytest.approx(100.0)
    assert o["cgF1"] == pytest.approx(90.0)
    assert o["recall"] == pytest.approx(90.0)


def test_false_positive_on_a_negative_counts_in_mcc_not_pmf1():
    # im0: cat A found; im1: no cat but a cat prediction; im2: no cat, nothing.
    # IL: TP=1, FP=1, TN=1, FN=0 -> MCC = (1*1 - 1*0)/sqrt(2*1*2*1) = 0.5.
    # pmF1 ignores im1's FP: 100; plain F1: precision 1/2, recall 1 -> 66.67; cgF1 = 50.
    r = run(
        [
            ([gt("cat", A)], [pred("cat", A, 0.9)], True),
            ([], [pred("cat", B, 0.6)], True),
            ([], [], True),
        ],
        ("cat",),
    )
    o = r["overall"]
    assert o["IL_MCC"] == pytest.approx(0.5)
    assert o["pmF1"] == pytest.approx(100.0)
    assert o["F1"] == pytest.approx(200 / 3)
    assert o["cgF1"] == pytest.approx(50.0)


def test_threshold_drops_low_scores():
    # The same FP scored 0.6 is dropped at threshold 0.7: IL_FP -> IL_TN, MCC 1, cgF1 100.
    images = [
        ([gt("cat", A)], [pred("cat", A, 0.9)], True),
        ([], [pred("cat", B, 0.6)], True),
        ([], [], True),
    ]
    assert run(images, ("cat",), thresholds=0.7)["overall"]["cgF1"] == pytest.approx(100.0)
    assert run(images, ("cat",), thresholds=0.5)["overall"]["cgF1"] == pytest.approx(50.0)


def test_hungarian_not_greedy():
    # One row of pixels: gt P = cols 0..9, gt Q = cols 4..13; pred1 (0.9) = cols 3..12,
    # pred2 (0.8) = Q. IoU(pred1, P) = 7/13 = 0.538, IoU(pred1, Q) = 9/11 = 0.818,
    # IoU(pred2, Q) = 1, IoU(pred2, P) = 6/14 = 0.43. Greedy by score gives pred1 -> Q and
    # then pred2 -> P below 0.5: 1 TP. The Hungarian assignment maximises total IoU:
    # pred1 -> P, pred2 -> Q (1.538 > 1.246): 2 TPs at 0.5, 1 at 0.55 and above.
    def row(x0, x1):
        return rect(x0, 0, x1, 1, h=1, w=20)

    es = EvalSet(["cat"])
    es.add_image(
        "strip",
        (1, 20),
        gt=[gt("cat", row(0, 10)), gt("cat", row(4, 14))],
        pred=[pred("cat", row(3, 13), 0.9), pred("cat", row(4, 14), 0.8)],
        exhaustive=True,
    )
    o = evaluate(es, ap=False)["overall"]
    assert o["TP@0.5"] == 2 and o["TP@0.75"] == 1


def test_not_exhaustive_images_only_evaluate_labelled_concepts():
    # im0 is not exhaustive and labels cat only: (im0, cat) is evaluated, (im0, dog) is not,
    # so its dog prediction is left out (skipped) instead of being a false positive.
    es = EvalSet(["cat", "dog"])
    es.add_image("im0", (20, 20), gt=[gt("cat", A)], pred=[pred("dog", B, 0.9)])
    r = evaluate(es, ap=False)
    assert r["overall"]["pairs"] == 1 and es.skipped == 1
    assert r["concepts"]["dog"]["pairs"] == 0
    assert r["overall"]["IL_FN"] == 1


def test_crowd_ground_truth_is_ignored():
    # A crowd region does not count as ground truth (as SA-Co's cgF1): the pair is negative.
    es = EvalSet(["cat"])
    es.add_image("im0", (20, 20), gt=[gt("cat", A, iscrowd=1)], exhaustive=True)
    o = evaluate(es, ap=False)["overall"]
    assert o["IL_TN"] == 1 and o["gt"] == 0


def test_definitions_on_counts():
    # Two pairs at every IoU: (TP 2, D 3, G 2) and (TP 0, D 1, G 0).
    # precision = 2/4, recall = 2/2, F1 = 2/3; pm precision = 2/(2+1) (the negative pair's FP
    # left out), pmF1 = 2*(2/3)/(5/3) = 0.8; IL: TP 1, FP 1 -> MCC 0 (no negatives, no misses).
    tp = np.array([[2] * 10, [0] * 10])
    f = cgf1_metrics(tp, np.array([3, 1]), np.array([2, 0]))
    assert f["precision"] == pytest.approx(50.0) and f["recall"] == pytest.approx(100.0)
    assert f["F1"] == pytest.approx(200 / 3) and f["pmF1"] == pytest.approx(80.0)
    assert mcc(3, 1, 4, 2) == pytest.approx((12 - 2) / np.sqrt(4 * 5 * 5 * 6))


def test_box_only_regions_are_their_rectangles():
    # A ground-truth box (xyxy 0,0,10,10) is the mask A: a prediction with mask A matches it
    # exactly (IoU 1), so every figure is perfect on the one positive pair plus a negative.
    es = EvalSet(["cat"])
    es.add_image(
        "im0",
        (20, 20),
        gt=[{"concept": "cat", "box": [0, 0, 10, 10]}],
        pred=[pred("cat", A, 0.9)],
        exhaustive=True,
    )
    es.add_image("im1", (20, 20), exhaustive=True)
    assert evaluate(es, ap=False)["overall"]["cgF1"] == pytest.approx(100.0)
    # bbox IoU mode compares the boxes: B's box does not overlap A's
    es.add_image(
        "im2",
        (20, 20),
        gt=[{"concept": "cat", "bbox": [10, 10, 10, 10]}],
        pred=[pred("cat", A, 0.8)],
        exhaustive=True,
    )
    o = evaluate(es, ap=False, iou_type="bbox")["overall"]
    assert (o["TP@0.5"], o["FP@0.5"], o["FN@0.5"]) == (1, 1, 1)


def test_bad_regions_name_the_problem():
    es = EvalSet()
    with pytest.raises(ValueError, match='needs a "concept"'):
        es.add_image("im0", (20, 20), gt=[{"mask": A}])
    with pytest.raises(ValueError, match="mask shape \\(20, 20\\) is not the image's \\(10, 10\\)"):
        es.add_image("im0", (10, 10), gt=[gt("cat", A)])
    with pytest.raises(ValueError, match='need a numeric "score"'):
        es.add_image("im0", (20, 20), pred=[{"concept": "cat", "mask": A}])
    with pytest.raises(ValueError, match="no mask"):
        es.add_image("im0", (20, 20), gt=[{"concept": "cat"}])
