"""The tiny SAM 3.1 video setup the multiplex tests share: a perturbed random-weight model
(buckets of 4 objects) in a `VideoPredictor`, and a video whose frames shift one pixel a frame."""

from __future__ import annotations

import numpy as np
import torch

from sam3_core.build import build_model
from sam3_core.config import sam3_1_tiny
from sam3_core.video.predictor import VideoPredictor
from tests.core.helpers import make_image
from tests.device import DEVICE
from tests.reference import perturb_


def multiplex_predictor(device: str | torch.device = DEVICE) -> VideoPredictor:
    """A `VideoPredictor` on the tiny SAM 3.1 model (seed 3, weights perturbed: outputs depend
    on the inputs) on `device` (default: `SAM3_TEST_DEVICE`, cpu unless set)."""
    torch.manual_seed(3)
    model = build_model(sam3_1_tiny())
    perturb_(model, 3)
    return VideoPredictor(model, device=device)


def moving_video(n: int, h: int = 64, w: int = 80) -> np.ndarray:
    """`n` uint8 RGB frames [n, h, w, 3]: one image rolled right by t pixels on frame t."""
    base = make_image(h, w, seed=5)
    return np.stack([np.roll(base, t, 1) for t in range(n)])
