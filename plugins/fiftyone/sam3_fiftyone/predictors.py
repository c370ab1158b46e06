"""One cache of loaded models for the whole plugin: image and video predictors share a model.

A model is loaded once per (checkpoint, config, device, precision, embedding store); the video
predictor of those settings is `VideoPredictor.from_image_predictor` of the image predictor (the
same weights, nothing loaded again). Predictors are shared by every operator run in the process
(the App runs operators in threads): `ImagePredictor` calls take turns under its lock, and each
video gets its own session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

KINDS = ("image", "video")
DEFAULT_CONFIG = None  # the checkpoint says which model it holds (sam3_core infers it)
CHECKPOINT_ENV = "SAM3_CHECKPOINT"  # default checkpoint (path or hub id) for operators and zoo
CACHE_SIZE = 2  # models kept loaded (least recently used goes first)

_loaded: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def cached_predictor(
    kind: str = "image",
    checkpoint: str | None = None,
    config: str | None = DEFAULT_CONFIG,
    device: str | None = None,
    precision: str = "fp32",
    store: str | None = None,
) -> Any:
    """The sam3_core `ImagePredictor` (kind "image") or `VideoPredictor` ("video") for these
    settings; the model is loaded on first use and shared by both kinds. store: an embedding
    store folder the image predictor reads before running the backbone (and fills)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use 'image' or 'video'")
    key = (
        checkpoint or None,
        config or DEFAULT_CONFIG,
        device or None,
        precision or "fp32",
        str(store) if store else None,
    )
    with _lock:
        entry = _loaded.get(key)
        if entry is None:
            from sam3_core import ImagePredictor

            extra = {"store": key[4]} if key[4] else {}
            image = ImagePredictor.from_pretrained(
                key[0], config=key[1], device=key[2], precision=key[3], **extra
            )
            entry = {"image": image}
            _loaded[key] = entry
            while len(_loaded) > CACHE_SIZE:
                _loaded.popitem(last=False)
        _loaded.move_to_end(key)
        if kind == "video" and "video" not in entry:
            from sam3_core.video.predictor import VideoPredictor

            entry["video"] = VideoPredictor.from_image_predictor(entry["image"])
        return entry[kind]
