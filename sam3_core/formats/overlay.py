"""Draw instances over an image for a quick visual check (PNG overlays, video frames)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sam3_core.results import Instances


def color_for(index: int) -> tuple[int, int, int]:
    """A stable, well-spread colour per instance (or track id)."""
    hue = (index * 0.618033988749895) % 1.0
    rgb = np.array(Image.new("HSV", (1, 1), (int(hue * 255), 200, 255)).convert("RGB"))[0, 0]
    return tuple(int(c) for c in rgb)


def draw_overlay(image: np.ndarray, instances: Instances, alpha: float = 0.45) -> Image.Image:
    """uint8 [H, W, 3] + instances -> PIL image with tinted masks, boxes and labels."""
    out = image.astype(np.float32).copy()
    ids = instances.track_ids if instances.track_ids is not None else np.arange(len(instances))
    for mask, key in zip(instances.masks, ids):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.array(color_for(int(key)), np.float32)
    canvas = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for box, name, score, key in zip(instances.boxes, instances.names(), instances.scores, ids):
        color = color_for(int(key))
        draw.rectangle([float(v) for v in box], outline=color, width=2)
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{name} {score:.2f}", fill=color)
    return canvas
