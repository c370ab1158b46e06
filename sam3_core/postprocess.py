"""Detector outputs -> `Instances`; masks as COCO RLE and polygons for storage."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sam3_core.results import Instances


def upsample_masks(
    low_res_logits: torch.Tensor, size: tuple[int, int], threshold: float
) -> torch.Tensor:
    """[N, h, w] logits -> bool [N, H, W]: bilinear on probabilities, then threshold."""
    if low_res_logits.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool, device=low_res_logits.device)
    probs = F.interpolate(
        low_res_logits.float().sigmoid()[None], size=size, mode="bilinear", align_corners=False
    )[0]
    return probs > threshold


def detections_to_instances(
    out, size: tuple[int, int], names: list[str], *, score_threshold: float, mask_threshold: float
) -> Instances:
    """Keep queries scoring above the threshold, on the device; move only kept masks to the host.

    out: a `DetectorOutput` with one row per concept.
    """
    scores = out.scores.float()  # [C, Q]
    keep = scores > score_threshold
    concept_idx, query_idx = keep.nonzero(as_tuple=True)
    kept_scores = scores[concept_idx, query_idx]
    order = torch.argsort(kept_scores, descending=True, stable=True)
    concept_idx, query_idx, kept_scores = concept_idx[order], query_idx[order], kept_scores[order]
    boxes = out.boxes.float()[concept_idx, query_idx] * boxes_scale(size, out.boxes.device)
    low_res = out.mask_logits.select(concept_idx, query_idx).float()
    masks = upsample_masks(low_res, size, mask_threshold)
    return Instances(
        masks=masks.cpu().numpy(),
        boxes=boxes.cpu().numpy().astype(np.float32),
        scores=kept_scores.cpu().numpy().astype(np.float32),
        labels=concept_idx.cpu().numpy().astype(np.int64),
        label_names=list(names),
        low_res_logits=low_res.cpu().numpy(),
        presence=out.presence.float().sigmoid()[:, 0].cpu().numpy(),
        semantic_logits=out.semantic.float()[:, 0].cpu().numpy(),
    )


def boxes_scale(size: tuple[int, int], device) -> torch.Tensor:
    """Multiplier taking normalised xyxy boxes to pixels of an H x W image."""
    h, w = size
    return torch.tensor([w, h, w, h], dtype=torch.float32, device=device)


def mask_to_rle(mask: np.ndarray) -> dict:
    """bool [H, W] -> COCO compressed RLE with a JSON-ready string `counts`."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_to_mask(rle: dict) -> np.ndarray:
    """COCO RLE -> bool [H, W]."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    rle = {
        "size": rle["size"],
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return mask_utils.decode(rle).astype(bool)


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy pixel box of a bool mask (zeros when empty)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros(4, np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """bool [N, H, W] -> tight xyxy pixel boxes [N, 4] (zeros for empty masks), on the device."""
    _, h, w = masks.shape
    # max over bytes is ~6x faster than any() over bools on CPU (same answer)
    b = masks.view(torch.uint8) if masks.dtype == torch.bool else (masks != 0).view(torch.uint8)
    rows, cols = b.amax(2) > 0, b.amax(1) > 0
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h + 1, 0).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w + 1, 0).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(rows.any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def masks_to_instances(
    low_res_logits: torch.Tensor, scores: torch.Tensor, size: tuple[int, int]
) -> Instances:
    """Interactive results: [N, h, w] logits -> one bool mask per object (logit > 0 at full size)."""
    masks = (
        F.interpolate(low_res_logits[None], size=size, mode="bilinear", align_corners=False)[0] > 0
    )
    return Instances(
        masks=masks.cpu().numpy(),
        boxes=masks_to_boxes(masks).cpu().numpy(),
        scores=scores.cpu().numpy().astype(np.float32),
        labels=np.zeros(len(masks), np.int64),
        label_names=["object"],
        low_res_logits=low_res_logits.cpu().numpy(),
    )
