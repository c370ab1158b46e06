"""Ground truth and predictions grouped by (image, concept) pair: what every metric reads.

An image labelled exhaustively contributes one pair per concept (a concept it lacks is a
negative); any other image contributes only the concepts its ground truth has (SA-Co's
`is_instance_exhaustive`). Regions are kept as compressed COCO RLE plus an xywh box.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils

from sam3_core.metrics.thresholds import concept_key
from sam3_core.results import Instances


class EvalDataError(ValueError):
    """Ground truth or predictions that cannot be evaluated; the message names what and why."""


@dataclass
class Pair:
    """One (image, concept) pair. G ground-truth regions, D predictions sorted by score, high
    first. rles: compressed COCO RLE dicts; boxes: float64 [n, 4] xywh pixels; gt_crowd: bool
    [G]; scores: float64 [D]."""

    image: str
    concept: str
    size: tuple[int, int]
    gt_rles: list[dict] = field(default_factory=list)
    gt_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    gt_crowd: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    dt_rles: list[dict] = field(default_factory=list)
    dt_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def num_gt(self) -> int:
        """Ground-truth regions that count (crowd regions do not, as in SA-Co's cgF1)."""
        return int((~self.gt_crowd).sum())


def to_rle(region: dict, size: tuple[int, int], what: str) -> dict:
    """A region's mask as compressed COCO RLE: from "mask" (bool [H, W]) or "segmentation"
    (compressed or uncompressed RLE, or polygons)."""
    height, width = size
    if region.get("mask") is not None:
        mask = np.asarray(region["mask"])
        if mask.shape != (height, width):
            raise EvalDataError(f"{what}: mask shape {mask.shape} is not the image's {size}")
        return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    seg = region.get("segmentation")
    if isinstance(seg, dict) and "counts" in seg:
        if list(seg.get("size", [])) != [height, width]:
            raise EvalDataError(f"{what}: RLE size {seg.get('size')} is not the image's {size}")
        if isinstance(seg["counts"], list):
            return mask_utils.frPyObjects(seg, height, width)
        counts = seg["counts"]
        return {
            "size": [height, width],
            "counts": counts.encode() if isinstance(counts, str) else counts,
        }
    if isinstance(seg, list) and seg:
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if "box" in region or "bbox" in region:
        return box_rle(region_box(region, what), size)
    raise EvalDataError(
        f'{what}: no mask; give "mask" (bool HxW), "segmentation" (COCO RLE or polygons) '
        'or at least "box"/"bbox"'
    )


def box_rle(box: np.ndarray, size: tuple[int, int]) -> dict:
    """The mask of an xywh box (for box-only regions)."""
    boxes = np.asarray(box, dtype=np.float64).reshape(1, 4)
    return mask_utils.frPyObjects(boxes, size[0], size[1])[0]


def region_box(region: dict, what: str) -> np.ndarray | None:
    """float64 [4] xywh from "bbox" (xywh) or "box" (xyxy), or None when neither is given."""
    if region.get("bbox") is not None:
        box = np.asarray(region["bbox"], dtype=np.float64).reshape(-1)
    elif region.get("box") is not None:
        x0, y0, x1, y1 = np.asarray(region["box"], dtype=np.float64).reshape(-1)[:4]
        box = np.array([x0, y0, x1 - x0, y1 - y0])
    else:
        return None
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise EvalDataError(f"{what}: a box needs 4 finite numbers; got {box.tolist()}")
    return box


def region_score(region: dict, what: str) -> float:
    """A prediction's score as a float in [0, 1]."""
    score = region.get("score")
    if isinstance(score, bool) or not isinstance(score, (int, float, np.floating)):
        raise EvalDataError(f'{what}: predictions need a numeric "score"; got {score!r}')
    return float(score)


def regions_from_instances(instances: Instances) -> list[dict]:
    """sam3 `Instances` -> prediction regions for `EvalSet.add_image` (mask, box, score)."""
    return [
        {"concept": name, "mask": mask, "box": box, "score": float(score)}
        for name, mask, box, score in zip(
            instances.names(), instances.masks, instances.boxes, instances.scores
        )
    ]


class EvalSet:
    """Ground truth and predictions of a labelled set, as (image, concept) pairs.

    concepts: the concept names evaluated (None: every concept seen in ground truth or
    predictions, in order of appearance). Names compare without case or extra spaces.
    """

    def __init__(self, concepts: Sequence[str] | None = None) -> None:
        self.fixed = concepts is not None
        self.names: dict[str, str] = {}
        for name in concepts or ():
            self.names.setdefault(concept_key(name), name)
        self.images: list[dict] = []  # {"id", "size", "exhaustive", "gt": [...], "pred": [...]}
        self.dropped = 0  # predictions a loader left out (pairs not evaluated)
        self.unpaired = 0  # predictions on pairs that `pairs()` does not evaluate
        self.notes: list[str] = []  # what a loader left out or assumed, for the user

    @property
    def skipped(self) -> int:
        """Predictions left out because their (image, concept) pair is not evaluated."""
        return self.dropped + self.unpaired

    @property
    def concepts(self) -> list[str]:
        """The concept names, in order."""
        return list(self.names.values())

    def add_image(
        self,
        image_id: str,
        size: tuple[int, int],
        gt: Iterable[dict] = (),
        pred: Iterable[dict] = (),
        exhaustive: bool = False,
        concepts: Sequence[str] | None = None,
    ) -> None:
        """Add one image: gt/pred regions are dicts with "concept" and a mask ("mask" bool
        [H, W], or "segmentation" COCO RLE / polygons), optional "box" xyxy or "bbox" xywh,
        "iscrowd" (gt) and "score" (pred, required). size: (H, W).
        exhaustive: every concept missing from `gt` is a true negative on this image;
        concepts: the concepts this image was labelled for (None: all of the set's)."""
        size = (int(size[0]), int(size[1]))
        labelled = None if concepts is None else list(dict.fromkeys(map(concept_key, concepts)))
        gt_items = [self.region(r, size, f"image {image_id!r} ground truth") for r in gt]
        pred_items = [
            self.region(r, size, f"image {image_id!r} prediction", scored=True) for r in pred
        ]
        self.images.append(
            {
                "id": str(image_id),
                "size": size,
                "exhaustive": bool(exhaustive),
                "gt": gt_items,
                "pred": pred_items,
                "concepts": labelled,
            }
        )

    def region(self, region: dict, size: tuple[int, int], what: str, scored: bool = False):
        """Normalise one region -> (concept key, rle, xywh box, crowd or score)."""
        name = region.get("concept")
        if not isinstance(name, str) or not name.strip():
            raise EvalDataError(f'{what}: every region needs a "concept" name; got {name!r}')
        key = concept_key(name)
        if key not in self.names:
            if self.fixed:
                return None  # a concept the user did not ask to evaluate
            self.names[key] = name
        rle = to_rle(region, size, what)
        box = region_box(region, what)
        if box is None:
            box = np.asarray(mask_utils.toBbox(rle), dtype=np.float64)
        extra = region_score(region, what) if scored else bool(region.get("iscrowd", 0))
        return key, rle, box, extra

    def pairs(self) -> list[Pair]:
        """Every evaluated (image, concept) pair, in image then concept order."""
        out: list[Pair] = []
        self.unpaired = 0
        for image in self.images:
            gt: dict[str, list] = defaultdict(list)
            pred: dict[str, list] = defaultdict(list)
            for g in image["gt"]:
                if g is not None:
                    gt[g[0]].append(g)
            for p in image["pred"]:
                if p is not None:
                    pred[p[0]].append(p)
            if image["concepts"] is None:
                keys = list(self.names)
            else:
                keys = [k for k in image["concepts"] if k in self.names]
            if not image["exhaustive"]:
                keys = [k for k in keys if k in gt]
            evaluated = set(keys)
            self.unpaired += sum(len(v) for k, v in pred.items() if k not in evaluated)
            for key in keys:
                pair_gt = gt.get(key, [])
                pair_pred = sorted(pred.get(key, []), key=lambda p: -p[3])
                out.append(
                    Pair(
                        image=image["id"],
                        concept=self.names[key],
                        size=image["size"],
                        gt_rles=[g[1] for g in pair_gt],
                        gt_boxes=np.array([g[2] for g in pair_gt]).reshape(-1, 4),
                        gt_crowd=np.array([g[3] for g in pair_gt], dtype=bool),
                        dt_rles=[p[1] for p in pair_pred],
                        dt_boxes=np.array([p[2] for p in pair_pred]).reshape(-1, 4),
                        scores=np.array([p[3] for p in pair_pred], dtype=np.float64),
                    )
                )
        return out
