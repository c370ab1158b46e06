"""One cache of loaded models for the whole plugin: image and video predictors share a model.

A model is loaded once per (checkpoint, config, device, precision); the video predictor of
those settings wraps the image predictor's model and uses that same `ImagePredictor` (its lock
and text cache), so tracking never loads a second copy. Predictors are shared by every operator
run in the process (the App runs operators in threads): `ImagePredictor` calls take turns under
its lock, and each video gets its own session.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

KINDS = ("image", "video")
CACHE_SIZE = 2  # models kept loaded (least recently used goes first)

_loaded: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def cached_predictor(
    kind: str = "image",
    checkpoint: str | None = None,
    config: str = "sam3",
    device: str | None = None,
    precision: str = "fp32",
) -> Any:
    """The sam3_core `ImagePredictor` (kind "image") or `VideoPredictor` ("video") for these
    settings; the model is loaded on first use and shared by both kinds."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use 'image' or 'video'")
    key = (checkpoint or None, config or "sam3", device or None, precision or "fp32")
    with _lock:
        entry = _loaded.get(key)
        if entry is None:
            from sam3_core import ImagePredictor

            image = ImagePredictor.from_pretrained(
                key[0], config=key[1], device=key[2], precision=key[3]
            )
            entry = {"image": image}
            _loaded[key] = entry
            while len(_loaded) > CACHE_SIZE:
                _loaded.popitem(last=False)
        _loaded.move_to_end(key)
        if kind == "video" and "video" not in entry:
            from sam3_core.video.session import VideoPredictor

            image = entry["image"]
            video = VideoPredictor(image.model, device=image.device, precision=image.precision)
            video.image = image  # one lock and text cache for both kinds of call on the model
            entry["video"] = video
        return entry[kind]
