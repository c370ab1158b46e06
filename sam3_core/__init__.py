"""SAM 3 (Segment Anything with Concepts): our PyTorch implementation and its small API."""

from sam3_core.build import build_model, load_model
from sam3_core.config import CONFIGS, Sam3Config, get_config
from sam3_core.io import ImageReadError, load_image
from sam3_core.predictor import ImagePredictor, ImageState
from sam3_core.prompts import PromptError
from sam3_core.results import Concept, Exemplar, Instances

__all__ = [
    "CONFIGS",
    "Concept",
    "Exemplar",
    "ImagePredictor",
    "ImageReadError",
    "ImageState",
    "Instances",
    "PromptError",
    "Sam3Config",
    "build_model",
    "get_config",
    "load_image",
    "load_model",
]
