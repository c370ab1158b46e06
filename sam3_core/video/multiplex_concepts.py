"""Concept tracking on SAM 3.1 videos: SAM 3's per-frame detection and association
(`sam3_core.video.concepts.concept_step`) over Object Multiplex groups, with SAM 3.1's values.

As Meta's 3.1 video model does it: a new detection's mask is its output on that frame ("mask as
output", `MultiplexVideo.mask_results`); new objects join the group (Meta: tracker state) with
the fewest free slots that still fits them all, else start a new group whose first frame is its
conditioning frame. On a frame a group has tracked already, new and re-conditioned objects only
get their conditioning channel set in that frame's memory (it stays an ordinary memory frame).
Re-conditioning writes the detection's mask. Each group encodes a frame's memory once, after
association, from every object's (constrained) mask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container
from dataclasses import replace
from typing import TYPE_CHECKING

import torch.nn.functional as F
from torch import Tensor

from sam3_core.modeling.detector import DetectorOutput
from sam3_core.predictor import ImageState
from sam3_core.prompts import ConceptBatch
from sam3_core.video.association import AssociationConfig, TrackState
from sam3_core.video.concepts import concept_step
from sam3_core.video.multiplex_backend import MultiplexVideo
from sam3_core.video.outputs import Outputs
from sam3_core.video.state import CurrentFrame, FrameResult, TrackedObject

if TYPE_CHECKING:
    from sam3_core.video.session import VideoSession

logger = logging.getLogger(__name__)

# Meta's `build_sam3_multiplex_video_predictor` (commit 96914d2): detection 0.4, new tracks 0.65,
# no hole filling, re-conditioning from the detection's mask; the rest as SAM 3.
SAM31_ASSOCIATION = AssociationConfig(
    score_threshold_detection=0.4,
    new_det_thresh=0.65,
    fill_hole_area=0,
    recondition_on_trk_masks=False,
)


class MultiplexConcepts:
    """The concept tracks of one SAM 3.1 session, in groups of buckets; the `ConceptHost` that
    `concept_step` runs on (the session's state, this module's tracker calls)."""

    def __init__(self, session: VideoSession, features: Callable[[int], CurrentFrame]) -> None:
        """`features(t)`: the session's backbone, detector and interactive features of frame
        t; new groups are siblings of the session's clicked group (`session.multiplex`)."""
        self.session, self.features = session, features
        self.groups: list[MultiplexVideo] = []
        self.frames: dict[int, Outputs] = {}  # outputs of add_concept's frames
        self._pending: dict[int, FrameResult] = {}  # this frame's results to encode, by id
        self._conditioning: set[int] = set()
        self._active: list[MultiplexVideo] = []  # groups propagated on this frame

    # ------------------------------------------------------------------ the session's state
    @property
    def association(self) -> AssociationConfig:
        """The session's thresholds, new tracks capped by the room `max_num_objects` leaves."""
        cfg = self.session.association
        room = self.clicks.max_num_objects - len(self.clicks.ids)
        return replace(cfg, max_num_objects=max(1, min(cfg.max_num_objects, room)))

    @property
    def clicks(self) -> MultiplexVideo:
        """The session's group of clicked objects (it owns the frame features)."""
        return self.session.multiplex

    @property
    def concepts(self) -> ConceptBatch | None:
        return self.session.concepts

    @property
    def objects(self) -> dict[int, TrackedObject]:
        return self.session.objects

    @property
    def track_states(self) -> dict[int, TrackState]:
        return self.session.track_states

    @property
    def removed_ids(self) -> set[int]:
        return self.session.removed_ids

    @property
    def lost_ids(self) -> set[int]:
        return self.session.lost_ids

    def detect_concepts(self, image: ImageState) -> DetectorOutput:
        return self.session.detect_concepts(image)

    def new_id(self) -> int:
        return self.session.new_id()

    def remove_object(self, obj_id: int) -> None:
        self.session.remove_object(obj_id)

    def count(self) -> int:
        """Concept tracks alive."""
        return sum(len(g.ids) for g in self.groups)

    def cond_frames(self) -> list[int]:
        """Frames holding add_concept results or a group's first frame."""
        return sorted({*self.frames, *(f for g in self.groups for f in g.cond_frames())})

    def nbytes(self) -> int:
        """Bytes of the groups' memory banks."""
        return sum(g.bank.nbytes() for g in self.groups)

    # ------------------------------------------------------------------ tracker calls
    def mask_result(self, feats: CurrentFrame, mask: Tensor) -> FrameResult:
        """A new detection [1, 1, h, w] logits -> its mask-as-output result (Meta: resized to
        the mask-input size, then > 0)."""
        return self._mask_output(feats.index, mask, threshold=0.0)

    def _mask_output(self, t: int, mask: Tensor, threshold: float) -> FrameResult:
        side = self.clicks.input_mask_size
        up = F.interpolate(mask.float(), size=(side, side), mode="bilinear", align_corners=False)
        return self.clicks.mask_results(t, [0], (up > threshold).float())[0]

    def remember(
        self,
        items: list[tuple[TrackedObject, FrameResult]],
        t: int,
        feats: CurrentFrame,
        binarize: bool,
        cond: bool | Container[int],
        reverse: bool,
        masks: Tensor | None = None,
        scores: Tensor | None = None,
        reconditioned: bool = False,
    ) -> None:
        """Keep the results whose memory `commit` encodes: `masks` [N, 1, h, w] and `scores`
        [N, 1] replace tracked objects' own (constrained masks); re-conditioned objects
        (`cond`) take their detection's mask (the rows of `masks`) as output."""
        size = self.clicks.mux.image_size
        for k, (obj, r) in enumerate(items):
            is_cond = cond if isinstance(cond, bool) else obj.obj_id in cond
            if masks is not None and is_cond and reconditioned:
                r = self._mask_output(t, masks[k : k + 1], threshold=0.5)
            elif masks is not None:
                high = F.interpolate(
                    masks[k : k + 1].float(), size=(size, size), mode="bilinear",
                    align_corners=False,
                )  # fmt: skip
                r = FrameResult(r.low_res, high, r.pointer, scores[k : k + 1])
            self._pending[obj.obj_id] = r
            if is_cond:
                self._conditioning.add(obj.obj_id)

    def discard(self, obj_id: int) -> None:
        """Drop an object from its group (an emptied group goes, with its memory)."""
        self._pending.pop(obj_id, None)
        self._conditioning.discard(obj_id)
        for g in self.groups:
            if obj_id in g.ids:
                g.remove(obj_id)
        self.groups = [g for g in self.groups if g.ids]
        self._active = [g for g in self._active if g.ids]

    # ------------------------------------------------------------------ one frame
    def step(self, t: int, reverse: bool, anchors: tuple[int, ...] = ()) -> Outputs:
        """Concept tracks on frame `t`: propagate every group, detect and associate, add and
        end tracks, encode each group's memory of `t`. Returns the tracks' outputs."""
        done = self.frames.pop(t, None)
        if done is None:
            done = self._track(t, reverse)
        for g in self.groups:
            g.bank.prune(t, anchors)
        return done  # (tracks ended since are hidden by the session's removed_ids)

    def add_frame(self, t: int) -> Outputs:
        """`step` for add_concept: its outputs are kept for `propagate` to yield on `t`."""
        self.frames.pop(t, None)
        self.frames[t] = self._track(t, False)
        return self.frames[t]

    def _track(self, t: int, reverse: bool) -> Outputs:
        feats = self.features(t)
        tracked, settled = [], {}
        self._active = []
        for g in self.groups:
            record = g.bank.records.get(t)
            if record is not None and record.cond:  # the group's first frame, revisited:
                for i in g.ids & record.results.keys():  # its outputs there are final
                    r = record.results[i]
                    score = r.score.float().sigmoid().reshape(())
                    settled[i] = (self.objects[i], r.low_res, score)
                later = [i for i in g.ids if i not in record.results]  # joined the group later
                if later:  # decoded from memory, their memory there left as it is
                    results = g.propagate_results(t, reverse)
                    tracked += [(self.objects[i], results[i]) for i in later]
                continue
            results = g.propagate_results(t, reverse)
            self._active.append(g)
            tracked += [(self.objects[i], results[i]) for i in g.ids]
        outputs = concept_step(self, t, feats, tracked, reverse, settled=settled or None)
        for i in self._commit(t):
            outputs.pop(i, None)
        return outputs | settled

    def _commit(self, t: int) -> list[int]:
        """Place new objects, encode every active group's memory of `t`; returns the new
        objects refused past `max_num_objects`."""
        placed = {i for g in self.groups for i in g.ids}
        new = [i for i in self._pending if i not in placed]
        room = self.clicks.max_num_objects - len(self.clicks.ids) - len(placed)
        refused = new[max(room, 0) :]
        if refused:
            logger.warning(
                "max_num_objects=%d reached: %d new concept detections on frame %d not "
                "tracked; start the session with a larger max_num_objects to track them",
                self.clicks.max_num_objects,
                len(refused),
                t,
            )
            for i in refused:
                self._pending.pop(i)
                self.session.remove_object(i)
                self.removed_ids.add(i)
            new = new[: max(room, 0)]
        target, prompted = None, set()
        if new:
            fits = [g for g in self._active if g.free_slots() >= len(new)]
            if fits:
                target = min(fits, key=MultiplexVideo.free_slots)
            else:
                target, prompted = self.clicks.sibling(), set(new)
                self.groups.append(target)
                self._active.append(target)
            target.add_objects(new)
        for g in self._active:
            results = {i: self._pending[i] for i in g.ids if i in self._pending}
            if len(results) == len(g.ids):
                cond = self._conditioning | set(new) if g is target else self._conditioning
                g.store(t, results, cond, prompted if g is target else set())
        self._pending, self._conditioning = {}, set()
        return refused


__all__ = ["SAM31_ASSOCIATION", "MultiplexConcepts"]
