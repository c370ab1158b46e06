"""Typed per-session video state: tracked objects, per-frame results, the current frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sam3_core.memory_bank import ObjectMemory
from sam3_core.modeling.tracker import TrackerImageFeatures
from sam3_core.predictor import ImageState


@dataclass
class TrackedObject:
    """One object: its id, label (index into the session's label names) and memory."""

    obj_id: int
    label: int
    memory: ObjectMemory = field(default_factory=ObjectMemory)
    clicks: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)


@dataclass
class FrameResult:
    """One object's output on one frame: low_res [1, 4h, 4w] logits, high_res [1, 1, S, S]
    logits, pointer [1, C], object score logit [1, 1] (B rows for B objects when batched)."""

    low_res: torch.Tensor
    high_res: torch.Tensor | None
    pointer: torch.Tensor
    score: torch.Tensor

    def row(self, i: int) -> FrameResult:
        """Object `i` of a batched result (each field keeps its leading dim of 1)."""
        high = None if self.high_res is None else self.high_res[i : i + 1]
        return FrameResult(
            self.low_res[i : i + 1], high, self.pointer[i : i + 1], self.score[i : i + 1]
        )


@dataclass
class CurrentFrame:
    """Backbone and tracker features of the one frame kept in memory."""

    index: int
    image: ImageState
    tracker: TrackerImageFeatures
