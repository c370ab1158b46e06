"""Typed per-session video state: tracked objects, per-frame results, the current frame, and
what concept tracking reads from its session (`ConceptState`, `ConceptHost`)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch

from sam3_core.modeling.tracker import TrackerImageFeatures
from sam3_core.predictor import ImageState
from sam3_core.video.memory_bank import ObjectMemory

if TYPE_CHECKING:
    from sam3_core.modeling.detector import DetectorOutput
    from sam3_core.prompts import ConceptBatch
    from sam3_core.video.association import AssociationConfig, TrackState


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


class ConceptState(Protocol):
    """A session's concept tracking state (`VideoSession` has it): the thresholds, the
    concepts, the tracks and their counters, the detector, ids, and removing an object.
    `unconfirmed`: frame -> the concept tracks not confirmed yet on it (none: no entry)."""

    association: AssociationConfig
    concepts: ConceptBatch | None
    objects: dict[int, TrackedObject]
    track_states: dict[int, TrackState]
    removed_ids: set[int]
    lost_ids: set[int]
    unconfirmed: dict[int, set[int]]

    def detect_concepts(self, image: ImageState) -> DetectorOutput: ...

    def new_id(self) -> int: ...

    def remove_object(self, obj_id: int) -> None: ...


class ConceptHost(ConceptState, Protocol):
    """What one frame of concept tracking needs from its session (`VideoSession` is one):
    `ConceptState`, and the session's tracker and memory."""

    def mask_result(self, feats: CurrentFrame, mask: torch.Tensor) -> FrameResult:
        """The tracker's result for a new track on the current frame, given the detector's
        mask logits [1, 1, h, w] (each host thresholds them as its reference does)."""
        ...

    def remember(  # cond: ids, or (re-conditioning from logits) id -> detection logits
        self,
        items: list[tuple[TrackedObject, FrameResult]],
        t: int,
        feats: CurrentFrame,
        binarize: bool,
        cond: bool | Container[int],
        reverse: bool,
        masks: torch.Tensor | None = None,
        scores: torch.Tensor | None = None,
        reconditioned: bool = False,
    ) -> None:
        """Store the memories of `items`' results on frame t (`binarize`: from their masks > 0);
        `cond` marks conditioning frames (all, or the ids given), `reconditioned` that they come
        from re-conditioning; `masks` [N, 1, h, w] and `scores` [N, 1] replace the results' own."""
        ...
