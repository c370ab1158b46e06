"""Video API entry point: `VideoPredictor` loads or shares a model and starts sessions.

vp = VideoPredictor.from_pretrained()   # or VideoPredictor.from_image_predictor(predictor)
session = vp.start("clip.mp4")          # sam3_core.video.session.VideoSession
"""

from __future__ import annotations

from typing import Any

import torch

from sam3_core.modeling.sam3 import Sam3Model
from sam3_core.modeling.tokenizer import ClipTokenizer
from sam3_core.predictor import ImagePredictor
from sam3_core.video.association import AssociationConfig
from sam3_core.video.frames import open_frames
from sam3_core.video.session import VideoSession


class VideoPredictor:
    """Tracks clicked objects and concepts through videos with a SAM 3 model."""

    def __init__(
        self,
        model: Sam3Model,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        tokenizer: ClipTokenizer | None = None,
    ) -> None:
        self.image = ImagePredictor(model, device, precision, tokenizer=tokenizer)
        self.model, self.device, self.precision = self.image.model, self.image.device, precision

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | None = None,
        *,
        config: str | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        token: str | None = None,
    ) -> VideoPredictor:
        """Load the released weights (hub id, default `facebook/sam3`, or a local file), as
        `ImagePredictor.from_pretrained` does; `config`: a preset name, needed only for a
        checkpoint that does not say which model it holds."""
        return cls.from_image_predictor(
            ImagePredictor.from_pretrained(
                checkpoint, config=config, device=device, precision=precision, token=token
            )
        )

    @classmethod
    def from_image_predictor(cls, image: ImagePredictor) -> VideoPredictor:
        """Track with the model an `ImagePredictor` already holds: the same weights (nothing
        loaded or copied), device, precision and tokenizer. Video frames never go into the
        image predictor's embedding store."""
        return cls(image.model, image.device, image.precision, tokenizer=image.tokenizer)

    def start(
        self,
        source: Any,
        offload_to_cpu: bool = False,
        max_memory_frames: int | None = None,
        association: AssociationConfig | None = None,
        max_num_objects: int | None = None,
    ) -> VideoSession:
        """Open a video (file, folder, TIFF stack, [T, H, W(, C)] array) for tracking.

        offload_to_cpu (SAM 3) keeps memory tensors on the CPU; max_memory_frames caps the prompted
        frames kept per object (the farthest from the latest one are dropped; default: all);
        `association.max_reconditioned_frames` caps concept tracks' re-conditioned ones (4).
        max_num_objects (SAM 3.1 only, default 128): objects past it are refused.
        """
        return VideoSession(
            self.image,
            open_frames(source),
            offload_to_cpu,
            max_memory_frames,
            association,
            max_num_objects=max_num_objects,
        )
