"""SAM 3 (Segment Anything with Concepts): our PyTorch implementation and its small API.

The image API loads with the package; videos (`sam3_core.video`) and large images and stacks
(`sam3_core.large`) load on first use of their names, so `import sam3_core` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sam3_core.build import build_model, load_model
from sam3_core.config import CONFIGS, Sam3Config, get_config
from sam3_core.formats.images import ImageReadError, load_image, open_array, to_axes
from sam3_core.predictor import ImagePredictor, ImageState
from sam3_core.prompts import PromptError
from sam3_core.results import Concept, Exemplar, Instances
from sam3_core.weights.config_record import save_checkpoint
from sam3_core.weights.errors import CheckpointError, MissingPartError

if TYPE_CHECKING:
    from sam3_core.large.sparse import TiledInstances
    from sam3_core.large.stacks import StackResult, segment_stack
    from sam3_core.large.tiling import segment_tiled
    from sam3_core.video.association import AssociationConfig
    from sam3_core.video.frames import open_frames
    from sam3_core.video.predictor import VideoPredictor
from sam3_core.video.session import VideoSession

_LAZY = {
    "AssociationConfig": "sam3_core.video.association",
    "open_frames": "sam3_core.video.frames",
    "VideoPredictor": "sam3_core.video.predictor",
    "VideoSession": "sam3_core.video.session",
    "TiledInstances": "sam3_core.large.sparse",
    "StackResult": "sam3_core.large.stacks",
    "segment_stack": "sam3_core.large.stacks",
    "segment_tiled": "sam3_core.large.tiling",
}


def __getattr__(name: str) -> Any:
    """Load a video or large-image name from its subpackage on first use."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sam3_core' has no attribute {name!r}")


__all__ = [
    "CONFIGS",
    "AssociationConfig",
    "CheckpointError",
    "Concept",
    "Exemplar",
    "ImagePredictor",
    "ImageReadError",
    "ImageState",
    "Instances",
    "MissingPartError",
    "PromptError",
    "Sam3Config",
    "StackResult",
    "TiledInstances",
    "VideoPredictor",
    "VideoSession",
    "build_model",
    "get_config",
    "load_image",
    "load_model",
    "open_array",
    "open_frames",
    "save_checkpoint",
    "segment_stack",
    "segment_tiled",
    "to_axes",
]
