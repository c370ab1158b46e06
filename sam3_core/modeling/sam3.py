"""The whole SAM 3: concept detector, tracker head and the tracker's own FPN neck.

Attribute names match the released checkpoint's transformers layout
(`detector_model.*`, `tracker_model.*`, `tracker_neck.*`), so it loads without renaming.
"""

from __future__ import annotations

from torch import nn

from sam3_core.config import Sam3Config
from sam3_core.modeling.detector import Sam3Detector
from sam3_core.modeling.neck import FPNNeck
from sam3_core.modeling.tracker import Sam3Tracker


class Sam3Model(nn.Module):
    """Detector and tracker sharing one ViT backbone (inside `detector_model.vision_encoder`)."""

    def __init__(self, config: Sam3Config) -> None:
        super().__init__()
        self.config = config
        self.detector_model = Sam3Detector(config)
        self.tracker_model = Sam3Tracker(config)
        self.tracker_neck = FPNNeck(config.vit.hidden_size, config.neck)
