"""Typed prompts and results at the public API (numpy, pixel coordinates of the original image)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Exemplar:
    """A box around an example of the concept, (x0, y0, x1, y1) in pixels; negative if not."""

    box: tuple[float, float, float, float]
    positive: bool = True


@dataclass(frozen=True)
class Concept:
    """A concept prompt: a noun phrase, exemplar boxes, or both (exemplars alone use "visual")."""

    text: str | None = None
    exemplars: tuple[Exemplar, ...] = ()

    @property
    def name(self) -> str:
        """The label the results carry: the text, else "exemplar"."""
        return self.text if self.text else "exemplar"


@dataclass
class Instances:
    """Instances found in one image; N instances, image of H x W pixels, C concepts.

    masks: bool [N, H, W]; boxes: float32 [N, 4] xyxy pixels; scores: float32 [N]
    (p(match | concept present) x p(concept present), or the predicted IoU for clicks);
    labels: int64 [N] index into `label_names`; label_names: one name per concept;
    low_res_logits: float32 [N, h, w] mask logits at the model's mask resolution (288 at full
    size), the input for refining an instance with clicks; presence: float32 [C], the
    probability that each concept is in the image; semantic_logits: float32 [C, h, w] the
    semantic map per concept (see `semantic_map`); track_ids: int64 [N] (videos), else None.
    """

    masks: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    low_res_logits: np.ndarray
    presence: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    semantic_logits: np.ndarray | None = None
    track_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the image the masks cover."""
        return tuple(self.masks.shape[1:3])

    def names(self) -> list[str]:
        """The label name of each instance."""
        return [self.label_names[i] for i in self.labels]

    def semantic_map(self, concept: int = 0) -> np.ndarray:
        """float32 [H, W] probability map of one concept at the image size.

        As the reference (transformers `Sam3Processor.post_process_semantic_segmentation`):
        sigmoid at the model's resolution, then bilinear resize; threshold it (> 0.5) for a mask.
        """
        import torch
        import torch.nn.functional as F

        if self.semantic_logits is None:
            raise ValueError("These instances carry no semantic map (interactive results).")
        probs = torch.from_numpy(self.semantic_logits[concept])[None, None].float().sigmoid()
        up = F.interpolate(probs, size=self.image_size, mode="bilinear", align_corners=False)
        return up[0, 0].numpy()

    def __getitem__(self, index) -> Instances:
        """Select instances by an index array, a slice or a bool mask."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return Instances(
            masks=self.masks[idx],
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            labels=self.labels[idx],
            label_names=self.label_names,
            low_res_logits=self.low_res_logits[idx],
            presence=self.presence,
            semantic_logits=self.semantic_logits,
            track_ids=None if self.track_ids is None else self.track_ids[idx],
        )
