"""Draw instances over an image for a quick visual check (PNG overlays, video frames)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    return _label_boxes(out, instances.boxes, instances.names(), instances.scores, ids)


def draw_tiled_overlay(
    thumb: np.ndarray, step: int, tiled: Any, alpha: float = 0.45
) -> Image.Image:
    """`TiledInstances` drawn on a thumbnail uint8 [h, w, 3] (every step-th pixel of the image).

    The thumbnail is what `TileReader.thumbnail` gives: masks tinted, boxes and labels drawn.
    """
    out = thumb.astype(np.float32)
    boxes = np.asarray(tiled.boxes, np.int64).reshape(-1, 4)
    for key, (box, crop) in enumerate(zip(boxes, tiled.crops)):
        oy, ox = -int(box[1]) % step, -int(box[0]) % step  # first sampled row/col in the crop
        sub = crop[oy::step, ox::step]
        ty, tx = (int(box[1]) + oy) // step, (int(box[0]) + ox) // step
        region = out[ty : ty + sub.shape[0], tx : tx + sub.shape[1]]
        sub = sub[: region.shape[0], : region.shape[1]]
        region[sub] = (1 - alpha) * region[sub] + alpha * np.array(color_for(key), np.float32)
    return _label_boxes(out, boxes / step, tiled.names(), tiled.scores, range(len(boxes)))


def _label_boxes(out: np.ndarray, boxes, names, scores, ids) -> Image.Image:
    """float [H, W, 3] tinted pixels -> PIL image with each box outlined and labelled."""
    canvas = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for box, name, score, key in zip(boxes, names, scores, ids):
        color = color_for(int(key))
        draw.rectangle([float(v) for v in box], outline=color, width=2)
        draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{name} {score:.2f}", fill=color)
    return canvas


def write_track_overlay(frames: Any, indices: list[int], out: Path, fps: float) -> None:
    """OUT/overlay.mp4 from the per-frame JSON that `sam3 track` wrote in OUT/frames.

    `frames` is the video's `FrameSource`; libx264 when available, else mpeg4.
    """
    import json
    from fractions import Fraction

    import av
    from tqdm import tqdm

    from sam3_core.postprocess import rle_to_mask

    h, w = frames.size
    try:
        av.codec.Codec("libx264", "w")
        codec = "libx264"
    except Exception:  # noqa: BLE001 - PyAV raises different errors across versions
        codec = "mpeg4"
    with av.open(str(out / "overlay.mp4"), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width, stream.pix_fmt = h + h % 2, w + w % 2, "yuv420p"
        for t in tqdm(indices, unit="frame", desc="overlay"):
            rec = json.loads((out / "frames" / f"{t:06d}.json").read_text())["instances"]
            names = sorted({r["label"] for r in rec})
            masks = [rle_to_mask(r["segmentation"]) for r in rec]
            inst = Instances(
                np.stack(masks) if masks else np.zeros((0, h, w), bool),
                np.array([r["box"] for r in rec], np.float32).reshape(-1, 4),
                np.array([r["score"] for r in rec], np.float32),
                np.array([names.index(r["label"]) for r in rec], np.int64),
                names,
                np.zeros((len(rec), 1, 1), np.float32),
                track_ids=np.array([r["track_id"] for r in rec], np.int64),
            )
            image = np.asarray(draw_overlay(frames[t], inst))
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
