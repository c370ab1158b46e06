"""Constraints between the masks of concept tracks on one frame, as SAM 3's video model applies
them (transformers' `Sam3VideoModel` / `Sam3VideoProcessor`). Plain functions on tensors.

- `suppress_recently_occluded`: of two tracks overlapping by IoU >= a threshold, the one occluded
  more recently is blanked (its logits set to -10) before its memory is written and output.
- `suppress_shrunk`: before memory encoding, a track that would keep < 30% of its area if every
  pixel went to its highest-logit track is written to memory as absent.
- `non_overlapping`: output masks, each pixel kept by the highest-scoring track covering it.
- `fill_small_regions`: holes and specks of up to `fill_hole_area` pixels (8-connected) filled
  and removed in the tracks' low-res masks, before they are matched (the released model's
  `fill_holes_in_mask_scores`).

Groups (concept indices) are constrained independently.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from sam3_core.video.association import mask_iou

NO_OBJECT = -10.0
NEVER_OCCLUDED = -1
ALWAYS_OCCLUDED = 100000
FILLED, REMOVED = 0.1, -0.1  # logits given to filled holes and removed specks


def _by_group(groups: Tensor):
    for g in groups.unique(sorted=True):
        yield torch.nonzero(groups == g, as_tuple=True)[0]


def suppress_recently_occluded(
    logits: Tensor, last_occluded: Tensor, groups: Tensor, threshold: float, reverse: bool
) -> Tensor:
    """bool [N]: tracks to blank. logits [N, h, w]; last_occluded [N] frame indices (-1 never,
    ALWAYS_OCCLUDED for tracks ending on this frame); groups [N] concept indices."""
    suppress = torch.zeros(len(logits), dtype=torch.bool, device=logits.device)
    binary = logits > 0
    for idx in _by_group(groups):
        if idx.numel() <= 1:
            continue
        pairs = torch.triu(mask_iou(binary[idx], binary[idx]) >= threshold, diagonal=1)
        occ = last_occluded[idx]
        later = torch.gt if not reverse else torch.lt
        i_later = pairs & later(occ[:, None], occ[None]) & (occ[None] > -1)
        j_later = pairs & later(occ[None], occ[:, None]) & (occ[:, None] > -1)
        suppress[idx] = i_later.any(1) | j_later.any(0)
    return suppress


def _pixelwise_winner(masks: Tensor) -> Tensor:
    """masks [N, 1, H, W] -> the same with every pixel clamped to <= -10 but in its argmax."""
    if masks.shape[0] == 1:
        return masks
    winner = masks.argmax(0, keepdim=True) == torch.arange(len(masks), device=masks.device).view(
        -1, 1, 1, 1
    )
    return torch.where(winner, masks, masks.clamp(max=NO_OBJECT))


def suppress_shrunk(masks: Tensor, groups: Tensor, ratio: float = 0.3) -> Tensor:
    """masks [N, 1, H, W] logits -> a copy where tracks that keep < `ratio` of their area under
    the pixel-wise non-overlap constraint are clamped to <= -10."""
    out = masks.clone()
    for idx in _by_group(groups):
        if idx.numel() <= 1:
            continue
        group = out[idx]
        before = (group > 0).sum((-1, -2)).clamp(min=1)
        after = (_pixelwise_winner(group) > 0).sum((-1, -2))
        keep = (after / before >= ratio)[..., None, None]
        out[idx] = torch.where(keep, group, group.clamp(max=NO_OBJECT))
    return out


def non_overlapping(masks: Tensor, scores: Tensor, groups: Tensor) -> Tensor:
    """bool masks [N, H, W], scores [N] -> each pixel kept only by its highest-scoring mask."""
    out = masks.clone()
    for idx in _by_group(groups):
        if idx.numel() <= 1:
            continue
        scored = torch.where(masks[idx], scores[idx, None, None].float(), 0.0)
        winner = scored.argmax(0, keepdim=True) == torch.arange(len(idx), device=masks.device).view(
            -1, 1, 1
        )
        out[idx] = masks[idx] & winner & (scored > 0)
    return out


def small_regions(masks: Tensor, limits: Tensor) -> Tensor:
    """bool [N, H, W], int [N] -> bool [N, H, W]: the True pixels whose 8-connected region
    has at most limits[i] pixels. One labelling of the whole stack (regions never connect
    across masks; labels grow mask by mask, so a label's mask is found by its number)."""
    within_mask = np.zeros((3, 3, 3), dtype=bool)
    within_mask[1] = True
    labels, n = ndimage.label(masks.cpu().numpy(), structure=within_mask)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    last_label = np.maximum.accumulate(labels.reshape(len(labels), -1).max(1))
    owner = np.searchsorted(last_label, np.arange(n + 1))
    small = sizes <= limits.cpu().numpy()[owner]
    small[0] = False
    return torch.from_numpy(small[labels]).to(masks.device)


def fill_small_regions(logits: Tensor, max_area: int) -> Tensor:
    """logits [N, H, W] -> a copy with background regions of <= `max_area` pixels set to
    FILLED, then foreground regions of <= min(`max_area`, half the mask's area) set to REMOVED
    (half, so that a tiny object is not erased). `max_area` <= 0 returns `logits` as is."""
    if max_area <= 0 or logits.numel() == 0:
        return logits
    limit = torch.full((len(logits),), max_area)
    logits = torch.where(small_regions(logits <= 0, limit), FILLED, logits)
    foreground = logits > 0
    limit = (foreground.flatten(1).sum(1).cpu() // 2).clamp(max=max_area)
    return torch.where(small_regions(foreground, limit), REMOVED, logits)
