"""COCO mask and box AP of the evaluated pairs, through pycocotools' own COCOeval.

Threshold-free: every prediction counts. Only evaluated pairs take part (a prediction of a
concept on an image not labelled exhaustively for it is left out, as in cgF1). AP, AP50 and
AP75 are in percent, per concept and overall (COCO's mean over concepts with ground truth);
None where a concept has no ground truth. At most 100 predictions per image (COCO's maxDets).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3_core.metrics.data import Pair
from sam3_core.metrics.table import concept_index
from sam3_core.metrics.thresholds import concept_key

AP_NAMES = ("AP", "AP50", "AP75")


def coco_datasets(pairs: Sequence[Pair], concepts: Sequence[str]) -> tuple[dict, list[dict]]:
    """(COCO ground-truth dict, COCO results list) of the pairs; image ids 1.. in pair order,
    category ids 1.. in `concepts` order."""
    index = concept_index(concepts)
    images: dict[str, dict] = {}
    gts: list[dict] = []
    dts: list[dict] = []
    for pair in pairs:
        if pair.image not in images:
            h, w = pair.size
            images[pair.image] = {
                "id": len(images) + 1,
                "height": h,
                "width": w,
                "file_name": pair.image,
            }
        image_id = images[pair.image]["id"]
        category_id = index[concept_key(pair.concept)] + 1
        for rle, box, crowd in zip(pair.gt_rles, pair.gt_boxes, pair.gt_crowd):
            gts.append(
                {
                    "id": len(gts) + 1,
                    "image_id": image_id,
                    "category_id": category_id,
                    "segmentation": rle,
                    "bbox": box.tolist(),
                    "area": float(mask_utils.area(rle)),
                    "iscrowd": int(crowd),
                }
            )
        for rle, box, score in zip(pair.dt_rles, pair.dt_boxes, pair.scores):
            dts.append(
                {
                    "image_id": image_id,
                    "category_id": category_id,
                    "segmentation": rle,
                    "bbox": box.tolist(),
                    "score": float(score),
                }
            )
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(concepts)]
    gt = {"images": list(images.values()), "annotations": gts, "categories": categories}
    return gt, dts


def run_cocoeval(gt: dict, dts: list[dict], iou_type: str) -> COCOeval | None:
    """pycocotools' COCOeval, evaluated, accumulated and summarised (quietly); None when
    there is nothing to evaluate (no ground truth or no predictions)."""
    if not gt["annotations"] or not dts:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(d) for d in dts])
        cocoeval = COCOeval(coco_gt, coco_dt, iou_type)
        cocoeval.evaluate()
        cocoeval.accumulate()
        cocoeval.summarize()
    return cocoeval


def category_ap(cocoeval: COCOeval, k: int) -> dict[str, float | None]:
    """AP, AP50, AP75 (percent) of category index k (None when it has no ground truth)."""
    precision = cocoeval.eval["precision"][:, :, k, 0, -1]  # [T, R], area "all", maxDets 100
    thrs = cocoeval.params.iouThrs
    out: dict[str, float | None] = {}
    for name, rows in zip(AP_NAMES, (slice(None), thrs == 0.5, thrs == 0.75)):
        values = precision[rows]
        valid = values[values > -1]
        out[name] = 100.0 * float(valid.mean()) if valid.size else None
    return out


def coco_ap(
    pairs: Sequence[Pair], concepts: Sequence[str]
) -> tuple[dict[str, dict[str, float | None]], dict[str, float | None]]:
    """({concept: {"AP_mask", "AP50_mask", ..., "AP_box", ...}}, overall) in percent."""
    gt, dts = coco_datasets(pairs, concepts)
    has_gt = {a["category_id"] - 1 for a in gt["annotations"] if not a["iscrowd"]}
    per: dict[str, dict[str, float | None]] = {c: {} for c in concepts}
    overall: dict[str, float | None] = {}
    for iou_type, suffix in (("segm", "_mask"), ("bbox", "_box")):
        cocoeval = run_cocoeval(gt, dts, iou_type)
        for k, name in enumerate(concepts):
            if cocoeval is not None:
                values = category_ap(cocoeval, k)
            else:  # no predictions: AP 0 where there is ground truth
                values = {n: (0.0 if k in has_gt else None) for n in AP_NAMES}
            per[name].update({n + suffix: v for n, v in values.items()})
        for i, n in enumerate(AP_NAMES):
            stat = None if cocoeval is None else float(cocoeval.stats[i])
            if cocoeval is None:
                stat = 0.0 if has_gt else None
            overall[n + suffix] = None if stat is None or stat < 0 else 100.0 * stat
    return per, overall
