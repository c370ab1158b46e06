"""Tensor operations the model needs without torchvision: RoI Align for exemplar boxes."""

from __future__ import annotations

import torch
from torch import Tensor


def _axis_weights(start: Tensor, length: Tensor, size: int, output_size: int) -> Tensor:
    """Averaged bilinear weights along one axis: [K] box starts/lengths -> [K, S, size].

    Bin p of box k samples ceil(length / S) evenly spaced points; each point spreads over its
    two neighbouring pixels as torchvision does (points beyond [-1, size] count as 0, points
    in [-1, 0] clamp to 0, points past the last pixel centre clamp to it). Row (k, p) is the
    mean of its samples' weights, so the separable product of two axes is RoI Align's average.
    """
    bin_size = length / output_size
    grid = torch.ceil(length / output_size).clamp(min=1)
    max_grid = grid.max().long().item()  # a SymInt under fake tensors (traceable)
    bins = torch.arange(output_size, device=start.device, dtype=start.dtype)
    steps = torch.arange(max_grid, device=start.device, dtype=start.dtype) + 0.5
    coord = (
        start[:, None, None]
        + bins[None, :, None] * bin_size[:, None, None]
        + steps[None, None, :] * bin_size[:, None, None] / grid[:, None, None]
    )  # [K, S, G]
    used = steps[None, None, :] < grid[:, None, None]
    inside = (coord >= -1.0) & (coord <= size) & used
    coord = coord.clamp(min=0)
    low = coord.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, size - 1, low)
    high = torch.where(at_edge, size - 1, low + 1)
    frac = torch.where(at_edge, torch.zeros_like(coord), coord - low.to(coord.dtype))
    keep = inside.to(coord.dtype)
    weights = torch.zeros(*coord.shape, size, device=start.device, dtype=start.dtype)
    weights.scatter_add_(-1, low[..., None], ((1.0 - frac) * keep)[..., None])
    weights.scatter_add_(-1, high[..., None], (frac * keep)[..., None])
    return weights.sum(dim=2) / grid[:, None, None]


def _check_inputs(features: Tensor, boxes: list[Tensor], output_size: int) -> None:
    """Raise a ValueError naming the bad argument and the expected shape."""
    if features.dim() != 4:
        raise ValueError(
            f"roi_align features must be [B, C, H, W], got shape {tuple(features.shape)}"
        )
    if len(boxes) != features.shape[0]:
        raise ValueError(
            f"roi_align needs one box tensor per image: got {len(boxes)} for a batch of "
            f"{features.shape[0]}; pass an empty [0, 4] tensor for images without boxes"
        )
    for i, b in enumerate(boxes):
        if b.dim() != 2 or b.shape[-1] != 4:
            raise ValueError(
                f"roi_align boxes[{i}] must be [K, 4] xyxy in feature pixels, got {tuple(b.shape)}"
            )
    if not isinstance(output_size, int) or output_size < 1:
        raise ValueError(f"roi_align output_size must be a positive int, got {output_size!r}")


def roi_align(features: Tensor, boxes: list[Tensor], output_size: int) -> Tensor:
    """Pool each box of features [B, C, H, W] to [sum K_i, C, S, S] (torchvision's RoI Align).

    `boxes[i]` is a [K_i, 4] xyxy tensor in feature-map pixels for image i. Equals
    `torchvision.ops.roi_align(features, boxes, S, spatial_scale=1.0, sampling_ratio=-1,
    aligned=False)`: boxes are at least 1 pixel wide, each output bin averages an adaptive
    ceil(h / S) x ceil(w / S) grid of bilinear samples. Bilinear sampling is separable, so each
    box is two small matrix products. Computes in float32 (float64 kept), returns the input dtype.
    """
    _check_inputs(features, boxes, output_size)
    _, channels, height, width = features.shape
    compute_dtype = torch.float64 if features.dtype == torch.float64 else torch.float32
    outputs = []
    for image, image_boxes in enumerate(boxes):
        if image_boxes.shape[0] == 0:
            continue
        b = image_boxes.to(device=features.device, dtype=compute_dtype)
        box_w = (b[:, 2] - b[:, 0]).clamp(min=1.0)
        box_h = (b[:, 3] - b[:, 1]).clamp(min=1.0)
        rows = _axis_weights(b[:, 1], box_h, height, output_size)  # [K, S, H]
        cols = _axis_weights(b[:, 0], box_w, width, output_size)  # [K, S, W]
        feats = features[image].to(compute_dtype)  # [C, H, W]
        pooled = torch.matmul(rows[:, None], feats[None])  # [K, C, S, W]
        outputs.append(torch.matmul(pooled, cols[:, None].transpose(-1, -2)))  # [K, C, S, S]
    if not outputs:
        return features.new_zeros((0, channels, output_size, output_size))
    return torch.cat(outputs).to(features.dtype)
