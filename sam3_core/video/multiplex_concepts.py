"""Concept tracking on SAM 3.1 videos: SAM 3's per-frame detection and association
(`sam3_core.video.concepts.concept_step`) over Object Multiplex groups, with SAM 3.1's values;
and the glue a `VideoSession` needs for a SAM 3.1 model (`clicked_group`, `prompt_clicked`).

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
from typing import Any, Protocol

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from sam3_core.modeling.detector import DetectorOutput
from sam3_core.modeling.tracker import Sam3Tracker, TrackerImageFeatures
from sam3_core.predictor import ImagePredictor, ImageState
from sam3_core.prompts import ConceptBatch, PromptError, mask_prompt
from sam3_core.video.association import AssociationConfig, TrackState
from sam3_core.video.clicks import click_inputs
from sam3_core.video.concepts import concept_step
from sam3_core.video.frames import FrameSource
from sam3_core.video.multiplex_backend import MultiplexVideo
from sam3_core.video.outputs import Outputs, collect_outputs
from sam3_core.video.state import ConceptState, CurrentFrame, FrameResult, TrackedObject

logger = logging.getLogger(__name__)

# Meta's `build_sam3_multiplex_video_predictor` (commit 96914d2) and its base class defaults:
# detection 0.4, new tracks 0.65, NMS by IoM 0.1, association and re-conditioning by IoM
# (re-conditioning at 0.5, ambiguous matches dropped), no detections within 2.5% of the
# border, tracks shown once detected on 3 frames in a row, no hole filling, re-conditioning
# from the detection's logits, keep-alive 0 / 8 / -4 (unused: Meta never applies its
# unmatched-track suppression); the rest as SAM 3.
SAM31_ASSOCIATION = AssociationConfig(
    score_threshold_detection=0.4,
    new_det_thresh=0.65,
    det_nms_use_iom=True,
    use_iom_association=True,
    drop_ambiguous_matches=True,
    high_iou_thresh=0.5,
    border_margin=0.025,
    masklet_confirmation=3,
    fill_hole_area=0,
    recondition_on_trk_masks=False,
    recondition_from_logits=True,
    init_trk_keep_alive=0,
    max_trk_keep_alive=8,
    min_trk_keep_alive=-4,
)


class MultiplexHost(ConceptState, Protocol):
    """What this module reads from a SAM 3.1 session (`VideoSession` is one): its concept
    state, its group of clicked objects (`multiplex`, set on SAM 3.1 sessions), its frames,
    image predictor and tracker, and its frame features."""

    multiplex: MultiplexVideo | None
    frames: FrameSource
    image: ImagePredictor
    tracker: Sam3Tracker

    @property
    def size(self) -> tuple[int, int]: ...

    @property
    def current(self) -> CurrentFrame | None: ...

    def frame_features(self, t: int) -> CurrentFrame: ...

    def encode_frame(self, frame: np.ndarray, detector: bool) -> ImageState: ...


class MultiplexConcepts:
    """The concept tracks of one SAM 3.1 session, in groups of buckets; the `ConceptHost` that
    `concept_step` runs on (the session's state, this module's tracker calls)."""

    def __init__(self, session: MultiplexHost, features: Callable[[int], CurrentFrame]) -> None:
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
        """The session's concepts (None before add_concept)."""
        return self.session.concepts

    @property
    def objects(self) -> dict[int, TrackedObject]:
        """The session's objects by id, clicked and concept tracks."""
        return self.session.objects

    @property
    def track_states(self) -> dict[int, TrackState]:
        """The session's concept-track counters by id."""
        return self.session.track_states

    @property
    def removed_ids(self) -> set[int]:
        """The session's ended tracks (false starts, duplicates): hidden on every frame."""
        return self.session.removed_ids

    @property
    def unconfirmed(self) -> dict[int, set[int]]:
        """The session's frame -> tracks not confirmed yet there (`masklet_confirmation`)."""
        return self.session.unconfirmed

    @property
    def lost_ids(self) -> set[int]:
        """The session's tracks ended as lost (`end_lost_after`): earlier frames keep them."""
        return self.session.lost_ids

    def detect_concepts(self, image: ImageState) -> DetectorOutput:
        """The session's detector on one frame, for its concepts."""
        return self.session.detect_concepts(image)

    def new_id(self) -> int:
        """A fresh object id from the session."""
        return self.session.new_id()

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking one object: the session's `remove_object` (its group slot freed)."""
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
        (`cond`) take their detection's mask (the rows of `masks`) as output, or with
        `recondition_from_logits` their pointer from `cond`'s detection logits [h, w] (a dict
        by id) and their memory from `masks`."""
        size = self.clicks.mux.image_size
        from_logits = self.session.association.recondition_from_logits
        for k, (obj, r) in enumerate(items):
            is_cond = cond if isinstance(cond, bool) else obj.obj_id in cond
            high = None
            if masks is not None:
                high = F.interpolate(
                    masks[k : k + 1].float(), size=(size, size), mode="bilinear",
                    align_corners=False,
                )  # fmt: skip
            if masks is not None and is_cond and reconditioned and from_logits:
                # Meta 3.1: pointer from the detection's logits > 0 at the mask size (`cond`
                # maps ids to them), memory from the (constrained) re-conditioning logits
                det = cond[obj.obj_id] if isinstance(cond, dict) else masks[k, 0]
                out = self._mask_output(t, det[None, None], threshold=0.0)
                r = FrameResult(out.low_res, high, out.pointer, scores[k : k + 1])
            elif masks is not None and is_cond and reconditioned:
                r = self._mask_output(t, masks[k : k + 1], threshold=0.5)
            elif masks is not None:
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

    def step_all(self, t: int, reverse: bool, anchors: tuple[int, ...] = ()) -> Outputs:
        """The session's outputs on frame `t`: its clicked group's, then the concept tracks'
        (while concepts are tracked)."""
        results = self.clicks.step(t, reverse, anchors)
        outputs = collect_outputs([(self.objects[i], r) for i, r in results.items()])
        if self.concepts is not None:
            outputs |= self.step(t, reverse, anchors)
        return outputs

    def add_frame(self, t: int) -> Outputs:
        """`step` for add_concept: its outputs are kept for `propagate` to yield on `t`;
        returns them with the clicked objects' outputs prompted on `t`."""
        self.frames.pop(t, None)
        self.frames[t] = self._track(t, False)
        record = self.clicks.bank.records.get(t)
        clicked = record.results if record is not None and record.cond else {}
        return collect_outputs([(self.objects[i], r) for i, r in clicked.items()]) | self.frames[t]

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


def clicked_group(session: MultiplexHost, max_num_objects: int) -> MultiplexVideo:
    """The session's group of clicked SAM 3.1 objects (it owns the frame features; concept
    groups are its `sibling`s). While concepts are tracked, frames come from the session's
    `frame_features` (the detector's levels too), else from a backbone pass alone."""

    def encode(t: int) -> ImageState:
        """Frame t's backbone features (with the detector's levels while concepts are tracked)."""
        if session.concepts is not None:
            return session.frame_features(t).image
        return session.encode_frame(session.frames[t], detector=False)

    def interactive(image: ImageState) -> TrackerImageFeatures:
        """The interactive tracker's features of `image`, reused from the current frame."""
        cur = session.current  # computed already when the frame came from `frame_features`
        if cur is not None and cur.image is image:
            return cur.tracker
        return session.image.tracker_features(image)

    image = session.image
    return MultiplexVideo(
        image.model, image.device, image.precision, len(session.frames), encode, interactive,
        max_num_objects,
    )  # fmt: skip


def prompt_clicked(
    session: MultiplexHost,
    obj: TrackedObject,
    frame: int,
    points: Any,
    point_labels: Any,
    boxes: Any,
    mask: Any,
    clear_old: bool,
) -> FrameResult:
    """`VideoSession.add_prompt` on a SAM 3.1 session: clicks and boxes through the
    interactive head, a mask as the object's output (mask as output); returns its result."""
    if obj.obj_id in session.track_states:
        raise PromptError(
            f"object {obj.obj_id} is a concept track; on SAM 3.1 videos prompts start or "
            "refine clicked objects only: give a new obj_id, or remove_object it first"
        )
    group, device = session.multiplex, session.image.device
    if mask is not None:
        prompt = mask_prompt(mask, session.size, group.input_mask_size, device)
        return group.add_mask(obj.obj_id, frame, prompt)
    coords, labels = click_inputs(
        obj, frame, points, point_labels, boxes, clear_old, session.size,
        session.tracker.image_size,
    )  # fmt: skip
    return group.add_clicks(obj.obj_id, frame, coords.to(device), labels.to(device))


__all__ = [
    "SAM31_ASSOCIATION",
    "MultiplexConcepts",
    "MultiplexHost",
    "clicked_group",
    "prompt_clicked",
]
