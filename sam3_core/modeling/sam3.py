"""The whole SAM 3: concept detector, tracker head and the tracker's own FPN neck.

Attribute names match the released checkpoint's transformers layout
(`detector_model.*`, `tracker_model.*`, `tracker_neck.*`), so it loads without renaming.
"""

from __future__ import annotations

import torch
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

    @property
    def matmul_dtype(self) -> torch.dtype:
        """The dtype in which the Linear and Conv weights are stored (fp32 unless cast)."""
        return self.detector_model.text_projection.weight.dtype

    def cast_matmul_weights_(self, dtype: torch.dtype) -> Sam3Model:
        """Store every Linear and Conv weight and bias in `dtype`, in place.

        Autocast casts exactly these to bf16/fp16 on every call (the ViT alone holds about
        450M parameters, a copy of about 2.7 GB per image on a CPU); cast once, the results
        under autocast are the same. Norms, embeddings and buffers stay fp32.
        """
        for module in self.modules():
            if isinstance(module, _MATMUL_LAYERS):
                module.to(dtype)
        return self


_MATMUL_LAYERS = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
