"""The whole SAM 3: concept detector, tracker head and the tracker's own FPN neck; for SAM 3.1
also the propagation neck and the multiplex tracker.

Attribute names match the released checkpoint's transformers layout
(`detector_model.*`, `tracker_model.*`, `tracker_neck.*`), so it loads without renaming.
A checkpoint may hold only some parts (`PARTS`); the model records which were loaded and
`require_parts` refuses a call that needs one that was not.
"""

from __future__ import annotations

import torch
from torch import nn

from sam3_core.config import Sam3Config
from sam3_core.modeling.detector import Sam3Detector
from sam3_core.modeling.multiplex_tracker import MultiplexTracker
from sam3_core.modeling.neck import FPNNeck
from sam3_core.modeling.tracker import Sam3Tracker
from sam3_core.weights.errors import MissingPartError

# The parts a checkpoint may hold, by the key prefixes they own (the first match wins), and
# what each is for. The ViT is shared: every task needs it.
PARTS: dict[str, tuple[str, ...]] = {
    "vision encoder": ("detector_model.vision_encoder.backbone.",),
    "detector": ("detector_model.",),
    "tracker": (
        "tracker_neck.",
        "tracker_model.prompt_encoder.",
        "tracker_model.mask_decoder.",
        "tracker_model.shared_image_embedding.",
        "tracker_model.no_memory_embedding",
    ),
    "video memory": ("tracker_model.",),
    "multiplex tracker": ("propagation_neck.", "multiplex_tracker."),  # SAM 3.1 only
}
PART_CONTENTS = {
    "vision encoder": "the ViT image encoder",
    "detector": "the concept detector: text encoder, DETR, mask head",
    "tracker": "the click tracker: prompt encoder, mask decoder, tracker neck",
    "video memory": "the tracker's memory: memory attention and encoder, object pointers",
    "multiplex tracker": "SAM 3.1's Object Multiplex tracker and its neck",
}
FULL_CHECKPOINT = "load facebook/sam3's full checkpoint (model.safetensors or sam3.pt)"
MULTIPLEX_HAS_NO_SAM3_MEMORY = (
    "SAM 3.1 (Object Multiplex) has no SAM 3 video memory: its videos are tracked by the "
    "multiplex tracker (part 'multiplex tracker'), which VideoPredictor uses for a SAM 3.1 "
    "model by itself; ask for that part instead"
)


def part_of(key: str) -> str:
    """The part (a `PARTS` name) that owns a key of our state dict."""
    for part, prefixes in PARTS.items():
        if key.startswith(prefixes):
            return part
    raise KeyError(f"{key!r} belongs to no part of SAM 3")


class Sam3Model(nn.Module):
    """Detector and tracker sharing one ViT backbone (inside `detector_model.vision_encoder`)."""

    def __init__(self, config: Sam3Config) -> None:
        super().__init__()
        self.config = config
        self.detector_model = Sam3Detector(config)
        self.tracker_model = Sam3Tracker(config)
        self.tracker_neck = FPNNeck(config.vit.hidden_size, config.neck)
        if config.multiplex is not None:  # SAM 3.1: the propagation neck and tracker
            self.propagation_neck = FPNNeck(config.vit.hidden_size, config.neck)
            self.multiplex_tracker = MultiplexTracker(config)
        # The parts a checkpoint filled (see `PARTS`); None: built at random, every part usable.
        self.loaded_parts: frozenset[str] | None = None

    def require_parts(self, *parts: str, task: str) -> None:
        """Raise MissingPartError unless every part needed for `task` holds loaded weights
        (and exists in this model kind: SAM 3.1 tracks videos without SAM 3's memory)."""
        if self.config.multiplex is not None and "video memory" in parts:
            raise MissingPartError(f"{task}: {MULTIPLEX_HAS_NO_SAM3_MEMORY}")
        if self.loaded_parts is None:
            return
        absent = [p for p in parts if p not in self.loaded_parts]
        if not absent:
            return
        held = [p for p in PARTS if p in self.loaded_parts and p != "vision encoder"]
        needs = " and ".join(f"the {p} ({PART_CONTENTS[p]})" for p in absent)
        verb = "is" if len(absent) == 1 else "are"
        raise MissingPartError(
            f"this checkpoint holds the {' and the '.join(held)} only; {needs} {verb} needed "
            f"for {task}: {FULL_CHECKPOINT}"
        )

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
