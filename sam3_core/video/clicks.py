"""Clicks and boxes of one object on one video frame, as the tracker's prompt encoder takes
them (transformers' video processor's layout: box corners first, labels 2/3, then points)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sam3_core.prompts import PromptError, normalize_clicks
from sam3_core.video.state import TrackedObject


def click_inputs(
    obj: TrackedObject,
    frame: int,
    points: Any,
    point_labels: Any,
    boxes: Any,
    clear_old: bool,
    size: tuple[int, int],
    image_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates [1, 1, P, 2] (model pixels) and labels [1, 1, P] for `obj` on `frame`; also
    remembered in `obj.clicks`, so that `clear_old=False` adds to the clicks given there."""
    if boxes is not None and not clear_old:
        raise PromptError("A box starts a new prompt on its frame: use clear_old=True with boxes.")
    clicks = normalize_clicks(
        None if points is None else np.asarray(points, np.float32).reshape(1, -1, 2),
        None if point_labels is None else np.asarray(point_labels).reshape(1, -1),
        None if boxes is None else np.asarray(boxes, np.float32).reshape(1, 4),
        None,
        size,
        image_size,
    )
    coords = torch.zeros(1, 1, 0, 2)
    labels = torch.zeros(1, 1, 0, dtype=torch.long)
    if clicks.boxes is not None:
        coords = clicks.boxes.reshape(1, 1, 2, 2).float()
        labels = torch.tensor([[[2, 3]]])
    if clicks.points is not None:
        coords = torch.cat([coords, clicks.points.float()], 2)
        labels = torch.cat([labels, clicks.labels.long()], 2)
    if not clear_old and frame in obj.clicks:
        old_coords, old_labels = obj.clicks[frame]
        coords, labels = torch.cat([old_coords, coords], 2), torch.cat([old_labels, labels], 2)
    obj.clicks[frame] = (coords, labels)
    return coords, labels


__all__ = ["click_inputs"]
