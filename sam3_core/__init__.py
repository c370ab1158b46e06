"""SAM 3 (Segment Anything with Concepts): our PyTorch implementation and its small API.

Model configs load with the package; every other name loads from its module on first use
(`sam3_core.lazy`), so `import sam3_core` and `sam3_core.config` need no torch (a CLI's
`--help` answers at once) and videos or large images cost nothing until used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sam3_core.config import CONFIGS, Sam3Config, get_config
from sam3_core.lazy import lazy_exports

if TYPE_CHECKING:
    from sam3_core.build import build_model, load_model
    from sam3_core.formats.images import ImageReadError, load_image, open_array, to_axes
    from sam3_core.large.sparse import TiledInstances
    from sam3_core.large.stacks import StackResult, segment_stack
    from sam3_core.large.tiling import segment_tiled
    from sam3_core.predictor import ImagePredictor, ImageState
    from sam3_core.prompts import PromptError
    from sam3_core.results import Concept, Exemplar, Instances
    from sam3_core.video.association import AssociationConfig
    from sam3_core.video.frames import open_frames
    from sam3_core.video.predictor import VideoPredictor
    from sam3_core.video.session import VideoSession
    from sam3_core.weights.config_record import save_checkpoint
    from sam3_core.weights.errors import CheckpointError, MissingPartError

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "build_model": "sam3_core.build",
        "load_model": "sam3_core.build",
        "ImageReadError": "sam3_core.formats.images",
        "load_image": "sam3_core.formats.images",
        "open_array": "sam3_core.formats.images",
        "to_axes": "sam3_core.formats.images",
        "TiledInstances": "sam3_core.large.sparse",
        "StackResult": "sam3_core.large.stacks",
        "segment_stack": "sam3_core.large.stacks",
        "segment_tiled": "sam3_core.large.tiling",
        "ImagePredictor": "sam3_core.predictor",
        "ImageState": "sam3_core.predictor",
        "PromptError": "sam3_core.prompts",
        "Concept": "sam3_core.results",
        "Exemplar": "sam3_core.results",
        "Instances": "sam3_core.results",
        "AssociationConfig": "sam3_core.video.association",
        "open_frames": "sam3_core.video.frames",
        "VideoPredictor": "sam3_core.video.predictor",
        "VideoSession": "sam3_core.video.session",
        "save_checkpoint": "sam3_core.weights.config_record",
        "CheckpointError": "sam3_core.weights.errors",
        "MissingPartError": "sam3_core.weights.errors",
    },
)

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
