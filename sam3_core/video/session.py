"""A video session: clicks or concepts on any frame, then a `propagate()` generator.

    vp = VideoPredictor(model)  # sam3_core.video.predictor
    session = vp.start("clip.mp4")
    session.add_prompt(0, obj_id=1, points=[[120, 80]], point_labels=[1])
    session.add_concept(0, concepts="person")
    for t, instances in session.propagate():
        ...

Click tracking follows SAM 2 / transformers' `Sam3TrackerVideoModel` (conditioning frames,
recent memories, object pointers, its multimask rules). Frames are decoded on demand, only the
current frame's backbone features are cached, and the memory bank keeps only what can still
be read (`sam3_core.video.memory_bank`), so memory stays flat however long the video is.
A SAM 3.1 model tracks with its Object Multiplex tracker instead: clicked and mask-prompted
objects in `sam3_core.video.multiplex_backend`, concept tracks (SAM 3's association with Meta's
SAM 3.1 heuristics, `SAM31_ASSOCIATION`) and this session's 3.1 glue in
`sam3_core.video.multiplex_concepts`. Concept tracks not confirmed yet
(`AssociationConfig.masklet_confirmation`) are hidden as the frames are yielded.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from sam3_core.device import autocast
from sam3_core.modeling.detector import DetectorOutput, ImageFeatures
from sam3_core.modeling.tracker import TrackerImageFeatures, TrackerMemory
from sam3_core.predictor import ImagePredictor, ImageState, preprocess
from sam3_core.prompts import ConceptBatch, PromptError, mask_prompt, normalize_concepts
from sam3_core.results import Concept, Exemplar, Instances
from sam3_core.video.association import AssociationConfig, TrackState
from sam3_core.video.clicks import click_inputs
from sam3_core.video.concepts import concept_step, hide_unconfirmed, merge_concepts
from sam3_core.video.frames import FrameSource
from sam3_core.video.memory_bank import FrameMemory, MemoryBank
from sam3_core.video.multiplex_backend import DEFAULT_MAX_NUM_OBJECTS, MultiplexVideo
from sam3_core.video.multiplex_concepts import (
    SAM31_ASSOCIATION,
    MultiplexConcepts,
    clicked_group,
    prompt_clicked,
)
from sam3_core.video.outputs import Outputs, collect_outputs, frame_instances
from sam3_core.video.state import CurrentFrame, FrameResult, TrackedObject

DIRECTIONS = ("forward", "backward", "both")


class VideoSession:
    """Tracking state of one video; objects are added by clicks or concepts, then propagated.
    `image`: the ImagePredictor whose model, device and precision track (`VideoPredictor.start`)."""

    def __init__(
        self,
        image: ImagePredictor,
        frames: FrameSource,
        offload_to_cpu: bool = False,
        max_memory_frames: int | None = None,
        association: AssociationConfig | None = None,
        max_num_objects: int | None = None,
    ) -> None:
        self.image, self.frames = image, frames
        # SAM 3.1 tracks with its multiplex tracker: clicked objects in `self.multiplex`,
        # concept tracks in groups of their own (`self.multiplex_concepts`)
        self.multiplex: MultiplexVideo | None = None
        self.multiplex_concepts: MultiplexConcepts | None = None
        if image.model.config.kind == "sam3.1":
            image.model.require_parts(
                "vision encoder", "tracker", "multiplex tracker", task="video"
            )
            if offload_to_cpu:
                raise ValueError(
                    "offload_to_cpu moves a SAM 3 session's per-object memory to the CPU; a SAM "
                    "3.1 session keeps one memory per bucket of objects on the device (16x less "
                    "at 16 objects a bucket): leave offload_to_cpu out"
                )
            self.multiplex = clicked_group(self, max_num_objects or DEFAULT_MAX_NUM_OBJECTS)
            self.multiplex_concepts = MultiplexConcepts(self, self.frame_features)
            self.multiplex.others = self.multiplex_concepts.count
            association = association or SAM31_ASSOCIATION
        elif max_num_objects is not None:
            raise ValueError(
                "max_num_objects caps SAM 3.1 (Object Multiplex) sessions; a SAM 3 session "
                "tracks any number of objects: leave it out"
            )
        else:
            image.model.require_parts("vision encoder", "tracker", "video memory", task="video")
        self.tracker = image.model.tracker_model
        self._vision = image.model.detector_model.vision_encoder
        cfg = self.tracker.config
        device = image.device
        self.association = association or AssociationConfig()
        self.bank = MemoryBank(
            num_memory_frames=cfg.num_memory_frames,
            max_cond_frames=cfg.max_cond_frame_num,
            max_object_pointers=cfg.max_object_pointers_in_encoder,
            num_frames=len(frames),
            device=device,
            storage=torch.device("cpu") if offload_to_cpu else device,
            max_kept_cond_frames=max_memory_frames,
            max_reconditioned_frames=self.association.max_reconditioned_frames,
        )
        self.objects: dict[int, TrackedObject] = {}
        self.label_names: list[str] = ["object"]
        self.concepts: ConceptBatch | None = None
        self.track_states: dict[int, TrackState] = {}
        self.removed_ids: set[int] = set()  # concept tracks ended as false starts/duplicates
        self.lost_ids: set[int] = set()  # concept tracks ended after end_lost_after empty frames
        self.unconfirmed: dict[int, set[int]] = {}  # frame -> tracks not confirmed yet there
        self._max_id = 0
        self._concept_frames: dict[int, Outputs] = {}  # outputs of add_concept's frames
        self._current: CurrentFrame | None = None

    # ------------------------------------------------------------------ properties
    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the video frames (and of the output masks)."""
        return self.frames.size

    @property
    def current(self) -> CurrentFrame | None:
        """The one frame whose features are cached (None before the first)."""
        return self._current

    def memory_bytes(self) -> int:
        """Bytes of tensors the session holds (memory bank + cached frame features)."""
        total = sum(o.memory.nbytes() for o in self.objects.values())
        if self.multiplex is not None:
            total += self.multiplex.nbytes() + self.multiplex_concepts.nbytes()
        if self._current is not None:
            feats = self._current.image.features
            tensors = [feats.vit, *feats.fpn, *feats.fpn_pos, self._current.tracker.image_embed]
            tensors += [*self._current.tracker.high_res_feats, self._current.tracker.image_pos]
            total += sum(t.numel() * t.element_size() for t in tensors)
        return total

    # ------------------------------------------------------------------ prompts
    @torch.inference_mode()
    def add_prompt(
        self,
        frame: int,
        obj_id: int | None = None,
        points: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        mask: Any = None,
        clear_old: bool = True,
    ) -> Instances:
        """Click, box or mask prompt for one object on one frame; returns its mask there.

        points [P, 2] pixel (x, y) with point_labels [P] (1 positive, 0 negative); boxes [4]
        xyxy pixels; mask bool [H, W] at the video size. On a frame the object was tracked on,
        the clicks refine that frame (its memory is replaced). `clear_old=False` adds the
        points to the ones already given on this frame.
        """
        self._check_frame(frame)
        if obj_id is None:
            obj_id = self.new_id()
        self._max_id = max(self._max_id, obj_id)
        if mask is not None and (points is not None or boxes is not None):
            raise PromptError("Give a mask, or points/boxes, for one object on a frame, not both.")
        obj = self.objects.get(obj_id) or TrackedObject(obj_id, label=0)
        if self.multiplex is not None:
            result = prompt_clicked(self, obj, frame, points, point_labels, boxes, mask, clear_old)
            self.objects[obj_id] = obj
            return self._instances(collect_outputs([(obj, result)]))
        feats = self.frame_features(frame)
        is_init = frame not in obj.memory.tracked
        recent = obj.memory.recent.get(frame)
        reverse = bool(recent.reverse) if recent is not None and not is_init else False
        if mask is not None:
            result = self.mask_result(
                feats,
                mask_prompt(mask, self.size, self.tracker.image_size, self.image.device),
            )
        else:
            coords, labels = click_inputs(
                obj,
                frame,
                points,
                point_labels,
                boxes,
                clear_old,
                self.size,
                self.tracker.image_size,
            )
            coords, labels = coords.to(self.image.device), labels.to(self.image.device)
            embed = None if is_init else self._attend(obj, frame, reverse, feats)
            multimask = self.tracker.use_multimask(is_init, labels.shape[-1])
            result = self._decode(feats.tracker, embed, coords, labels, multimask)
        self.objects[obj_id] = obj
        self.remember([(obj, result)], frame, feats, binarize=True, cond=is_init, reverse=reverse)
        return self._instances(collect_outputs([(obj, result)]))

    @torch.inference_mode()
    def add_concept(
        self,
        frame: int,
        concepts: str | Concept | Sequence[str | Concept] | None = None,
        exemplars: Sequence[Exemplar | Sequence[float]] | None = None,
    ) -> Instances:
        """Track every instance of the concepts: detect on `frame` (and on every propagated
        frame), start tracks for confident new detections. Returns the tracks on `frame`.

        A second call adds its concepts to those tracked (one given again is not repeated):
        tracks found earlier keep their concept's label and are matched on `frame`, not found
        again, and from then on every frame is searched for all the concepts.
        """
        self._check_frame(frame)
        batch = normalize_concepts(concepts, exemplars, self.size)
        self.concepts = merge_concepts(self.concepts, batch)
        self.label_names = ["object", *self.concepts.names]
        if self.multiplex_concepts is not None:
            return self._instances(self.multiplex_concepts.add_frame(frame))
        feats = self.frame_features(frame)
        tracks = [(o, self._cond_result(o, frame)) for o in self._concept_objects()]
        pending = [o for o, r in tracks if r is None]
        tracks = [(o, r) for o, r in tracks if r is not None]
        tracks += self._track(pending, frame, False, feats)
        outputs = concept_step(self, frame, feats, tracks, False)
        self._concept_frames[frame] = outputs
        clicked = [(o, self._cond_result(o, frame)) for o in self.objects.values()]
        clicked = [(o, r) for o, r in clicked if r is not None and o.obj_id not in outputs]
        return self._instances(collect_outputs(clicked) | outputs)

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking one object (its memory is freed)."""
        if obj_id not in self.objects:
            raise KeyError(f"No object with id {obj_id}; known ids: {sorted(self.objects)}.")
        del self.objects[obj_id]
        self.track_states.pop(obj_id, None)
        if self.multiplex is not None:
            self.multiplex.remove(obj_id)
            self.multiplex_concepts.discard(obj_id)

    # ------------------------------------------------------------------ propagation
    def propagate(
        self, start: int | None = None, direction: str = "forward", max_frames: int | None = None
    ) -> Iterator[tuple[int, Instances]]:
        """Yield (frame index, Instances with track_ids and masks at the video size) per frame.

        start: first frame (default: the first prompted frame forward, the last backward);
        direction: "forward", "backward" or "both" (forward from `start`, then backward from
        the frame before it: every frame once, as SAM 3 does).
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r} is not one of {DIRECTIONS}.")
        if not self.objects and self.concepts is None:
            raise PromptError("Nothing to track: call add_prompt or add_concept on a frame first.")
        prompted = [f for o in self.objects.values() for f in o.memory.cond]
        if self.multiplex is not None:
            prompted = self.multiplex.cond_frames() + self.multiplex_concepts.cond_frames()
        passes = []
        if direction in ("forward", "both"):
            passes.append((min(prompted, default=0) if start is None else start, False))
        if direction in ("backward", "both"):
            passes.append((max(prompted, default=0) if start is None else start, True))
        try:
            for first, reverse in passes:
                yield from self._pass(first, reverse, direction, max_frames)
                self.unconfirmed.clear()
        finally:  # also when the caller stops early: no stale records for the next pass
            self.unconfirmed.clear()

    def _pass(
        self, first: int, reverse: bool, direction: str, max_frames: int | None
    ) -> Iterator[tuple[int, Instances]]:
        """One pass of `propagate` from `first`, outputs held back as SAM 3 does."""
        self._check_frame(first)
        if reverse:
            order = range(first - (direction == "both"), -1, -1)
        else:
            order = range(first, self.num_frames)
        if max_frames is not None:
            order = order[:max_frames]
        anchors = (first,) if direction == "both" else ()
        cfg = self.association
        delay = cfg.hotstart_delay if self.concepts is not None else 0
        if delay > 0:  # a frame is shown once its confirmation look-ahead frame is processed
            delay = max(delay, cfg.masklet_confirmation)
        held: list[tuple[int, Outputs]] = []
        for t in order:
            held.append((t, self._step(t, reverse, anchors)))
            # as SAM 3, concept outputs wait `hotstart_delay` frames so that tracks found
            # to be false starts or duplicates meanwhile are hidden on every frame
            if delay > 0 and t != order[-1] and len(held) < delay:
                continue
            ready, held = (held, []) if delay <= 0 or t == order[-1] else (held[:1], held[1:])
            for f, outputs in ready:
                yield f, self._instances(self._shown(outputs, f, reverse, order[-1]))

    @torch.inference_mode()
    def _step(self, t: int, reverse: bool, anchors: tuple[int, ...]) -> Outputs:
        if self.multiplex is not None:
            return self.multiplex_concepts.step_all(t, reverse, anchors)
        feats = self.frame_features(t)
        done = self._concept_frames.pop(t, None)
        reused, pending = [], []
        for obj in self.objects.values():
            if done is not None and obj.obj_id in done:
                continue
            stored = self._cond_result(obj, t)
            if stored is None:
                pending.append(obj)
            else:
                reused.append((obj, stored))
        fresh = self._track(pending, t, reverse, feats)
        clicked = [(o, r) for o, r in fresh if o.obj_id not in self.track_states]
        self.remember(clicked, t, feats, binarize=False, cond=False, reverse=reverse)
        outputs = collect_outputs(reused + clicked)
        tracked = [(o, r) for o, r in fresh if o.obj_id in self.track_states]
        # on a frame add_concept already settled, tracks started since (propagating towards
        # it) are matched there too, beside the settled ones
        if self.concepts is not None and (done is None or tracked):
            outputs |= concept_step(self, t, feats, tracked, reverse, settled=done)
        outputs |= done or {}
        for obj in self.objects.values():
            self.bank.prune(obj.memory, t, anchors)
        return outputs

    # ------------------------------------------------------------------ model calls
    def frame_features(self, t: int) -> CurrentFrame:
        """Frame `t`'s features; the detector's FPN only while concepts are tracked."""
        detector = self.concepts is not None
        cur = self._current
        if cur is not None and cur.index == t:
            if detector and not cur.image.features.fpn:
                vit = cur.image.features.vit.permute(0, 3, 1, 2)
                with autocast(self.image.device, self.image.precision):
                    fpn, pos = self._vision.neck(vit, num_levels=3)
                cur.image.features.fpn[:], cur.image.features.fpn_pos[:] = fpn, pos
            return cur
        self._current = None
        image = self.encode_frame(self.frames[t], detector)
        self._current = CurrentFrame(t, image, self.image.tracker_features(image))
        return self._current

    def encode_frame(self, frame: np.ndarray, detector: bool) -> ImageState:
        """Backbone pass on one frame; with `detector` also the detector's FPN levels."""
        if detector:
            return self.image.set_image(frame)
        device = self.image.device
        pixels = preprocess(frame, self.image.image_size)[None].to(device)
        pixels = (pixels.float() / 255.0 - 0.5) / 0.5
        with autocast(device, self.image.precision):
            vit = self._vision.backbone(pixels)
        return ImageState(frame.shape[:2], ImageFeatures(vit, [], []))

    def _memory(self, obj: TrackedObject, t: int, reverse: bool, dtype: torch.dtype):
        """The attention tokens of one object's memory bank for frame `t`."""
        q = self.bank.query(obj.memory, t, reverse)
        with autocast(self.image.device, self.image.precision):
            return self.tracker.build_memory(
                [(o, _as(m, dtype), _as(p, dtype)) for o, m, p in q.spatial],
                q.pointers,
                q.pointer_offsets,
                q.max_pointers,
            )

    def _attend(self, obj: TrackedObject, t: int, reverse: bool, feats: CurrentFrame):
        bank = self._memory(obj, t, reverse, feats.tracker.image_embed.dtype)
        with autocast(self.image.device, self.image.precision):
            return self.tracker.attend_memory(feats.tracker, bank)

    def _track(
        self, objs: list[TrackedObject], t: int, reverse: bool, feats: CurrentFrame
    ) -> list[tuple[TrackedObject, FrameResult]]:
        """Memory attention + decoder for objects without a prompt on `t`, one batch per
        memory layout (objects whose banks hold the same number of tokens)."""
        dtype = feats.tracker.image_embed.dtype
        groups: dict[tuple, list[tuple[TrackedObject, TrackerMemory]]] = {}
        for obj in objs:
            bank = self._memory(obj, t, reverse, dtype)
            key = (tuple(bank.memory.shape), bank.num_object_pointer_tokens)
            groups.setdefault(key, []).append((obj, bank))
        multimask = self.tracker.use_multimask(False, 0)
        out = []
        for items in groups.values():
            n, f = len(items), feats.tracker
            batch = TrackerImageFeatures(
                f.image_embed.expand(n, -1, -1, -1),
                tuple(h.expand(n, -1, -1, -1) for h in f.high_res_feats),
                f.image_pos.expand(n, -1, -1, -1),
            )
            bank = TrackerMemory(
                torch.cat([b.memory for _, b in items]),
                torch.cat([b.memory_pos for _, b in items]),
                items[0][1].num_object_pointer_tokens,
            )
            with autocast(self.image.device, self.image.precision):
                embed = self.tracker.attend_memory(batch, bank)
            r = self._decode(batch, embed, None, None, multimask)
            out += [(obj, r.row(i)) for i, (obj, _) in enumerate(items)]
        return out

    def _decode(
        self, tracker: TrackerImageFeatures, embed, coords, labels, multimask: bool
    ) -> FrameResult:
        """Decoder pass on B images (one object each); the result holds B rows."""
        with autocast(self.image.device, self.image.precision):
            out = self.tracker.predict_masks(
                tracker, coords, labels, multimask=multimask, image_embed=embed
            )
            low, high, pointer = self.tracker.track_step_output(out)
        return FrameResult(
            low[:, 0].float(), high.float(), pointer[:, 0], out.object_score_logits[:, 0]
        )

    # ------------------------------------------------------------------ for the concept step
    def detect_concepts(self, image: ImageState) -> DetectorOutput:
        """The detector's raw output for the session's concepts on one frame."""
        return self.image.detect_concepts(image, self.concepts)

    def mask_result(self, feats: CurrentFrame, mask: torch.Tensor) -> FrameResult:
        """The tracker's output for a mask prompt [N, 1, H, W] on the current frame (0/1, or
        the detector's logits: kept where >= 0.5, as SAM 3's video model)."""
        mask = (mask >= 0.5).to(mask.dtype)
        with autocast(self.image.device, self.image.precision):
            low, high, score, pointer = self.tracker.mask_as_output(feats.tracker, mask)
        return FrameResult(low[:, 0].float(), high.float(), pointer, score)

    def remember(
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
        """Encode the memories of freshly computed results (one batch) and store them.

        `cond` marks conditioning frames: for all objects, or the ids in a set; with
        `reconditioned` they come from re-conditioning, not prompts (the bank caps those). `masks`
        [N, 1, H, W] and `scores` [N, 1] replace the results' own high-res logits and object
        scores as the memory encoder's input (concept tracks use constrained masks).
        """
        if not items:
            return
        embed = feats.tracker.image_embed
        high = torch.cat([r.high_res for _, r in items]) if masks is None else masks
        if scores is None:
            scores = torch.cat([r.score for _, r in items])
        with autocast(self.image.device, self.image.precision):
            memory, pos = self.tracker.encode_memory(
                embed.expand(len(items), -1, -1, -1), high, scores, binarize
            )
        for i, (obj, r) in enumerate(items):
            is_cond = cond if isinstance(cond, bool) else obj.obj_id in cond
            record = FrameMemory(
                memory[i : i + 1],
                pos[i : i + 1],
                r.pointer,
                r.score,
                low_res=r.low_res if is_cond or binarize else None,
                reverse=reverse,
                reconditioned=is_cond and reconditioned,
            )
            self.bank.store(obj.memory, t, record, cond=is_cond)

    def _cond_result(self, obj: TrackedObject, t: int) -> FrameResult | None:
        m = obj.memory.cond.get(t)
        if m is None:
            m = obj.memory.recent.get(t)
            if m is None or m.low_res is None:
                return None
        return FrameResult(m.low_res.to(self.image.device), None, m.pointer, m.object_score)

    # ------------------------------------------------------------------ concepts
    def _concept_objects(self) -> list[TrackedObject]:
        return [o for o in self.objects.values() if o.obj_id in self.track_states]

    def new_id(self) -> int:
        """A fresh object id, above every id given so far (ids are never reused)."""
        self._max_id = max(self._max_id, *self.objects, 0) + 1
        return self._max_id

    # ------------------------------------------------------------------ helpers
    def _shown(self, outputs: Outputs, f: int, reverse: bool, last: int) -> Outputs:
        """Outputs of frame `f` without unconfirmed tracks (as Meta, only when outputs are
        held back); `last`: the pass's last frame."""
        cfg = self.association
        n = cfg.masklet_confirmation if cfg.hotstart_delay > 0 else 0
        return hide_unconfirmed(outputs, self.unconfirmed, f, reverse, n, last)

    def _instances(self, outputs: Outputs) -> Instances:
        concept_ids = self.track_states.keys() | self.removed_ids | self.lost_ids
        mask_size = self.tracker.prompt_encoder.mask_input_size
        return frame_instances(
            outputs, concept_ids, self.removed_ids, self.size, self.label_names, mask_size
        )

    def _check_frame(self, t: int) -> None:
        if not 0 <= t < self.num_frames:
            raise IndexError(
                f"frame {t} is out of range: the video has {self.num_frames} frames "
                f"(0..{self.num_frames - 1})"
            )


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`t.to(dtype)` without a dispatch when it already has that dtype."""
    return t if t.dtype == dtype else t.to(dtype)


__all__ = ["VideoSession"]
