"""SAM 3 (Segment Anything with Concepts): our PyTorch implementation and its small API."""

from sam3_core.association import AssociationConfig
from sam3_core.build import build_model, load_model
from sam3_core.config import CONFIGS, Sam3Config, get_config
from sam3_core.frames import open_frames
from sam3_core.io import ImageReadError, load_image, open_array, to_axes
from sam3_core.predictor import ImagePredictor, ImageState
from sam3_core.prompts import PromptError
from sam3_core.results import Concept, Exemplar, Instances
from sam3_core.sparse import TiledInstances
from sam3_core.stacks import StackResult, segment_stack
from sam3_core.tiling import segment_tiled
from sam3_core.video import VideoPredictor, VideoSession

__all__ = [
    "CONFIGS",
    "AssociationConfig",
    "Concept",
    "Exemplar",
    "ImagePredictor",
    "ImageReadError",
    "ImageState",
    "Instances",
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
    "segment_stack",
    "segment_tiled",
    "to_axes",
]
