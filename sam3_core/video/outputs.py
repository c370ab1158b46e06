"""What a video session yields per frame: objects' outputs turned into `Instances`.

Clicked objects are shown as decoded; concept tracks as SAM 3 shows them (ended tracks and
empty masks dropped, each pixel kept by its highest-scoring track of the same concept).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sam3_core.postprocess import masks_to_boxes
from sam3_core.results import Instances
from sam3_core.video.masklets import non_overlapping
from sam3_core.video.state import FrameResult, TrackedObject

# obj_id -> (object, low-res logits [1, h, w], score in [0, 1])
Outputs = dict[int, tuple[TrackedObject, Tensor, Tensor]]

# Elements of resized logits made at once by `upsample_masks`: on a CPU a slice this small is
# thresholded while still in cache (~1.7x faster than one resize of every object at 128).
CPU_SLICE_ELEMENTS = 1 << 20


def upsample_masks(low: Tensor, size: tuple[int, int]) -> Tensor:
    """Logits [N, h, w] -> bool masks [N, *size]: bilinear resize (align_corners=False), then
    > 0, equal to one resize of all. Objects with no positive logit are all False without a
    resize (bilinear weights are non-negative); the others are resized a slice at a time."""
    n = low.shape[0]
    masks = torch.zeros(n, *size, dtype=torch.bool, device=low.device)
    present = (low > 0).flatten(1).any(1).tolist()
    per_slice = n if low.device.type != "cpu" else max(1, CPU_SLICE_ELEMENTS // (size[0] * size[1]))
    start = 0
    for k, p in enumerate([*present, False]):  # runs of consecutive present objects
        if not p:
            for a in range(start, k, per_slice):
                b = min(a + per_slice, k)
                up = F.interpolate(low[None, a:b], size=size, mode="bilinear", align_corners=False)
                torch.gt(up[0], 0, out=masks[a:b])
            start = k + 1
    return masks


def any_pixel(masks: Tensor) -> Tensor:
    """bool [N, H, W] -> bool [N]: which masks have a pixel (a byte max: faster than `any`)."""
    return masks.flatten(1).view(torch.uint8).amax(1) > 0


def collect_outputs(items: list[tuple[TrackedObject, FrameResult]]) -> Outputs:
    """Outputs of freshly decoded objects: their low-res logits and sigmoid object scores."""
    return {o.obj_id: (o, r.low_res, r.score.float().sigmoid().reshape(())) for o, r in items}


def concept_masks(
    outputs: Outputs, removed: set[int], size: tuple[int, int]
) -> tuple[list[int], Tensor, Tensor, Tensor]:
    """Output masks of concept tracks at the video size, as transformers' video processor:
    ended tracks and empty masks dropped, then each pixel kept by its highest-scoring track.
    Returns ids, low-res logits [N, h, w], scores [N] and bool masks [N, H, W]."""
    ids = sorted(i for i in outputs if i not in removed)
    if not ids:
        return [], torch.zeros(0, 1, 1), torch.zeros(0), torch.zeros(0, *size, dtype=torch.bool)
    low = torch.cat([outputs[i][1] for i in ids]).float()
    scores = torch.stack([outputs[i][2].float().reshape(()) for i in ids])
    masks = upsample_masks(low, size)
    keep = any_pixel(masks)
    ids = [i for i, k in zip(ids, keep.tolist()) if k]
    low, scores, masks = low[keep], scores[keep], masks[keep]
    groups = torch.tensor([outputs[i][0].label for i in ids], dtype=torch.long)
    if len(ids) > 1:
        masks = non_overlapping(masks, scores, groups.to(masks.device))
    return ids, low, scores, masks


def frame_instances(
    outputs: Outputs,
    concept_ids: Collection[int],
    removed: set[int],
    size: tuple[int, int],
    label_names: Sequence[str],
    mask_size: tuple[int, int],
) -> Instances:
    """Instances of one frame at the video `size`: clicked objects first (by id), then the
    concept tracks (`concept_ids`) kept by `concept_masks`; empty low-res logits are
    [0, *mask_size]."""
    clicked = sorted(i for i in outputs if i not in concept_ids)
    concept = {i: v for i, v in outputs.items() if i in concept_ids}
    ids, low, scores, masks = concept_masks(concept, removed, size)
    if clicked:
        low_c = torch.cat([outputs[i][1] for i in clicked]).float()
        scores_c = torch.stack([outputs[i][2].float().reshape(()) for i in clicked])
        masks_c = upsample_masks(low_c, size)
        dev = low_c.device
        low = torch.cat([low_c, low.to(dev)]) if ids else low_c
        scores = torch.cat([scores_c, scores.to(dev)]) if ids else scores_c
        masks = torch.cat([masks_c, masks.to(dev)]) if ids else masks_c
    ids = clicked + ids
    if not ids:
        low = torch.zeros(0, *mask_size)
    return Instances(
        masks=masks.cpu().numpy(),
        boxes=masks_to_boxes(masks).cpu().numpy(),
        scores=scores.cpu().numpy().astype(np.float32),
        labels=np.array([outputs[i][0].label for i in ids], np.int64),
        label_names=list(label_names),
        low_res_logits=low.cpu().numpy(),
        track_ids=np.array(ids, np.int64),
    )


__all__ = [
    "CPU_SLICE_ELEMENTS",
    "Outputs",
    "any_pixel",
    "collect_outputs",
    "concept_masks",
    "frame_instances",
    "upsample_masks",
]
