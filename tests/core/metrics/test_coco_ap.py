"""COCO mask and box AP equal pycocotools' own COCOeval on the same files."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3_core.metrics.evaluation import evaluate
from sam3_core.metrics.loaders import load_eval_set
from tests.core.metrics.helpers import box_result


def synthetic_coco(seed: int = 0, images: int = 12):
    """(ground truth dict, results list): rectangles as polygons, predictions jittered,
    some missed, some extra, scores mixed; three categories."""
    rng = np.random.default_rng(seed)
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "bird"}]
    gt = {"images": [], "annotations": [], "categories": cats}
    results = []
    for i in range(1, images + 1):
        h, w = 60, 80
        gt["images"].append({"id": i, "file_name": f"im{i}.png", "height": h, "width": w})
        for _ in range(rng.integers(0, 4)):
            c = int(rng.integers(1, 4))
            x, y = int(rng.integers(0, 50)), int(rng.integers(0, 35))
            bw, bh = int(rng.integers(8, 30)), int(rng.integers(8, 25))
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i,
                    "category_id": c,
                    "segmentation": [list(map(float, poly))],
                    "bbox": [x, y, bw, bh],
                    "area": float(bw * bh),
                    "iscrowd": 0,
                }
            )
            if rng.random() < 0.8:  # found, with jitter
                dx, dy = (int(v) for v in rng.integers(-4, 5, size=2))
                results.append(box_result(i, c, x + dx, y + dy, bw, bh, h, w, rng.random()))
        for _ in range(rng.integers(0, 3)):  # false positives
            c = int(rng.integers(1, 4))
            x, y = int(rng.integers(0, 50)), int(rng.integers(0, 35))
            results.append(box_result(i, c, x, y, 12, 10, h, w, 0.6 * rng.random()))
    return gt, results


def pycocotools_ap(gt_file, res_file, iou_type, cat_ids=None) -> list[float]:
    """AP, AP50, AP75 from pycocotools on the files, optionally for some categories only."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        dt = coco.loadRes(str(res_file))
        ev = COCOeval(coco, dt, iou_type)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [100 * float(s) for s in ev.stats[:3]]


@pytest.mark.parametrize("seed", [0, 1])
def test_ap_equals_pycocotools(tmp_path, seed):
    gt, results = synthetic_coco(seed)
    gt_file, res_file = tmp_path / "gt.json", tmp_path / "res.json"
    gt_file.write_text(json.dumps(gt))
    res_file.write_text(json.dumps(results))
    report = evaluate(load_eval_set(gt_file, res_file, exhaustive=True))
    for iou_type, suffix in (("segm", "_mask"), ("bbox", "_box")):
        ap, ap50, ap75 = pycocotools_ap(gt_file, res_file, iou_type)
        o = report["overall"]
        assert o["AP" + suffix] == pytest.approx(ap, abs=1e-9)
        assert o["AP50" + suffix] == pytest.approx(ap50, abs=1e-9)
        assert o["AP75" + suffix] == pytest.approx(ap75, abs=1e-9)
        for cat in gt["categories"]:
            own = pycocotools_ap(gt_file, res_file, iou_type, [cat["id"]])[0]
            assert report["concepts"][cat["name"]]["AP" + suffix] == pytest.approx(own, abs=1e-9)
    assert 0 < report["overall"]["AP_mask"] < 100  # a test that can fail both ways
