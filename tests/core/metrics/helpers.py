"""Small hand-built masks, regions and COCO entries for the metric tests."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

H, W = 20, 20
SQUARE = [5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]  # a 10 x 10 COCO polygon at (5, 5)


def rect(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> np.ndarray:
    """bool [h, w], True on columns x0..x1-1 and rows y0..y1-1."""
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def gt(concept: str, mask: np.ndarray, **extra) -> dict:
    """A ground-truth region."""
    return {"concept": concept, "mask": mask, **extra}


def pred(concept: str, mask: np.ndarray, score: float) -> dict:
    """A predicted region."""
    return {"concept": concept, "mask": mask, "score": score}


def box_result(image_id, category_id, x, y, bw, bh, h, w, score) -> dict:
    """A COCO result: an RLE rectangle, its bbox, a score."""
    mask = np.zeros((h, w), np.uint8)
    mask[max(y, 0) : y + bh, max(x, 0) : x + bw] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    box = [float(v) for v in mask_utils.toBbox(rle)]
    return {
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": rle,
        "bbox": box,
        "score": float(score),
    }


def square_annotation(ann_id: int, image_id: int, category_id: int = 1) -> dict:
    """A COCO ground-truth annotation: the SQUARE polygon, its bbox and area."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": [SQUARE],
        "bbox": [5, 5, 10, 10],
        "area": 100.0,
        "iscrowd": 0,
    }
