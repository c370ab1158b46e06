"""Click tracking with SAM 3.1 (Object Multiplex): what `VideoSession` runs for a "sam3.1"
model. Clicks and boxes go through the interactive head (no memory); propagation decodes
every object at once, in buckets of `multiplex_count`: per frame one memory-attention, one
mask-decoder and one memory-encoder pass per bucket, reading `MultiplexBank`'s memory.

A click on a frame that holds no prompt yet first propagates the other objects there (Meta's
"propagation and interaction"), then the frame becomes a conditioning frame of every bucket.
A new object makes the prompted frames' memories stale (the buckets changed) and forgets the
tracked ones (the next `propagate` recomputes them). A stale memory is encoded once, before
anything reads it: N objects clicked on a frame cost ceil(N / multiplex_count) bucket encodes
there, not one full encode per click (which grew as N^2 / multiplex_count).

Mask prompts and the detector's masks of concept tracks take Meta's "mask as output" path
(`mask_results`): the mask itself is the frame's output (logits +-10), and the interactive head,
given the mask as a dense prompt, only makes its object pointer. Concept tracks
(`sam3_core.video.multiplex_concepts`) use a group's parts one by one: `propagate_results`,
`add_objects` (new objects into free slots, no memory forgotten) and `store`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from sam3_core.device import autocast
from sam3_core.modeling.multiplex_state import PADDING, MultiplexState
from sam3_core.modeling.multiplex_tracker import MultiplexFrameOutput
from sam3_core.modeling.sam3 import Sam3Model
from sam3_core.modeling.tracker import NO_OBJECT_SCORE, TrackerImageFeatures
from sam3_core.predictor import ImageState
from sam3_core.prompts import PromptError
from sam3_core.video.multiplex_memory import MultiplexBank, MultiplexRecord
from sam3_core.video.state import FrameResult

DEFAULT_MAX_NUM_OBJECTS = 128  # Meta's base predictor default (its 3.1 builder sets 16)


@dataclass
class MultiplexFeatures:
    """One frame's inputs: the propagation neck's coarsest level image / image_pos
    [1, C, h, w] with its two finer levels through the multiplex decoder's conv_s0 / conv_s1
    (high_res), and the interactive head's features (clicks; None until a click needs them)."""

    image: Tensor
    image_pos: Tensor
    high_res: tuple[Tensor, Tensor]
    interactive: TrackerImageFeatures | None = None


class MultiplexVideo:
    """The SAM 3.1 objects of one video session: their buckets, memory and per-frame passes."""

    def __init__(
        self,
        model: Sam3Model,
        device: torch.device,
        precision: str,
        num_frames: int,
        encode: Callable[[int], ImageState],
        interactive: Callable[[ImageState], TrackerImageFeatures],
        max_num_objects: int = DEFAULT_MAX_NUM_OBJECTS,
        shared: Callable[..., MultiplexFeatures] | None = None,
    ) -> None:
        """`encode(t)`: the backbone's output on frame t; `interactive`: the interactive head's
        features of such an output (both the session's); `shared`: another group's `features`
        to read frames from (groups of one session compute each frame once)."""
        if max_num_objects < 1:
            raise ValueError(f"max_num_objects must be at least 1, got {max_num_objects}")
        cfg = model.config.multiplex
        if cfg is None:
            raise ValueError("MultiplexVideo needs a SAM 3.1 model (config.kind 'sam3.1')")
        self.model = model
        self.head, self.mux, self.neck = (
            model.tracker_model,
            model.multiplex_tracker,
            model.propagation_neck,
        )
        self.device, self.precision = device, precision
        self.encode, self.interactive = encode, interactive
        self.multiplex_count, self.max_num_objects = cfg.multiplex_count, max_num_objects
        self.bank = MultiplexBank(
            num_memory_frames=cfg.num_memory_frames,
            max_cond_frames=cfg.max_cond_frame_num,
            max_object_pointers=cfg.max_object_pointers_in_encoder,
            num_frames=num_frames,
        )
        self.ids: list[int] = []  # object ids in multiplex-state order
        self.state: MultiplexState | None = None
        self._cached: tuple[int, ImageState, MultiplexFeatures] | None = None
        self._shared = shared
        self.others: Callable[[], int] = lambda: 0  # objects the session tracks elsewhere

    def sibling(self) -> MultiplexVideo:
        """A new, empty group of the same model and cap that reads this group's features."""
        return MultiplexVideo(
            self.model, self.device, self.precision, self.bank.num_frames, self.encode,
            self.interactive, self.max_num_objects, shared=self.features,
        )  # fmt: skip

    @property
    def input_mask_size(self) -> int:
        """Side of the masks the mask-as-output path takes (Meta's `input_mask_size`: 4x the
        low-res mask side, 1152 for the released model)."""
        return 16 * self.mux.grid

    # ------------------------------------------------------------------ features
    def features(self, t: int, clicks: bool = False) -> MultiplexFeatures:
        """Frame `t`'s features: the ViT once, the propagation neck, and with `clicks` the
        interactive neck (only the current frame's are kept)."""
        if self._shared is not None:
            return self._shared(t, clicks)
        if self._cached is None or self._cached[0] != t:
            self._cached = None
            image = self.encode(t)
            vit = image.features.vit.permute(0, 3, 1, 2)
            dec = self.mux.mask_decoder
            with autocast(self.device, self.precision):
                fpn, pos = self.neck(vit, num_levels=3, heads=(dec.conv_s0, dec.conv_s1))
            self._cached = (t, image, MultiplexFeatures(fpn[2], pos[2], (fpn[0], fpn[1])))
        _, image, feats = self._cached
        if clicks and feats.interactive is None:
            feats.interactive = self.interactive(image)
        return feats

    # ------------------------------------------------------------------ prompts
    def add_clicks(self, obj_id: int, t: int, coords: Tensor, labels: Tensor) -> FrameResult:
        """Clicks / box corners coords [1, 1, P, 2] (model pixels), labels [1, 1, P] for one
        object on frame `t`; returns its result there (low_res [1, 4h, 4w])."""

        def decode(feats: MultiplexFeatures) -> FrameResult:
            multimask = self.head.use_multimask(True, labels.shape[-1])
            frame = self._interactive_output(feats, coords, labels, multimask)
            return _results([obj_id], frame)[obj_id]

        return self._prompt(obj_id, t, decode)

    def add_mask(self, obj_id: int, t: int, mask: Tensor) -> FrameResult:
        """A mask prompt [1, 1, M, M] {0, 1} (M = `input_mask_size`) for one object on frame
        `t`: the mask is its output there (Meta's mask-as-output); returns that result."""
        return self._prompt(obj_id, t, lambda feats: self.mask_results(t, [obj_id], mask)[obj_id])

    def check_room(self, count: int = 1) -> None:
        """Refuse `count` new objects past `max_num_objects` (all of the session's)."""
        total = len(self.ids) + self.others()
        if total + count > self.max_num_objects:
            raise PromptError(
                f"this session tracks {total} objects and max_num_objects is "
                f"{self.max_num_objects}: remove_object some first, or start the session with "
                "a larger max_num_objects"
            )

    def _prompt(
        self, obj_id: int, t: int, decode: Callable[[MultiplexFeatures], FrameResult]
    ) -> FrameResult:
        """One object's prompt on `t`: `decode` makes its result; the frame becomes a
        conditioning frame holding every object's output there."""
        new = obj_id not in self.ids
        if new:
            self.check_room()
        feats = self.features(t, clicks=True)
        record = self.bank.records.get(t)
        if record is not None and record.cond:
            results, prompted = dict(record.results), set(record.prompted)
        else:
            results, prompted = self._propagated(t, feats), set()
        result = decode(feats)
        results[obj_id] = result
        prompted.add(obj_id)
        if new:
            self.state = self._grown(self.state, [obj_id])
            self.ids.append(obj_id)
            self.bank.drop_tracked()
            for f in self.bank.cond_frames():  # the other prompted frames, for the new buckets
                if f != t:
                    r = self.bank.records[f]
                    self.bank.records[f] = self._stale(r.image, r.image_pos, r.results, r.prompted)
        self.bank.records[t] = self._stale(feats.image, feats.image_pos, results, prompted)
        return result

    def mask_results(self, t: int, ids: list[int], masks: Tensor) -> dict[int, FrameResult]:
        """Meta's mask-as-output for N objects on frame `t`: masks [N, 1, M, M] in [0, 1]
        (M = `input_mask_size`; others are resized) become logits +-10 (high_res, and low_res
        [1, M/4, M/4] by an antialiased resize), present where the mask has a pixel; the
        pointer comes from the interactive head given the mask as a dense prompt."""
        feats = self.features(t, clicks=True)
        size = self.input_mask_size
        m = masks.float()
        if m.shape[-2:] != (size, size):
            m = F.interpolate(
                m, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        high = m * 20.0 - 10.0
        low = F.interpolate(
            high, size=(size // 4, size // 4), mode="bilinear", align_corners=False, antialias=True
        )
        n = m.shape[0]
        coords = torch.zeros(1, n, 1, 2, device=m.device)  # a padding point, as Meta's
        labels = -torch.ones(1, n, 1, device=m.device, dtype=torch.long)
        with autocast(self.device, self.precision):
            dense = self.head.mask_downsample(m.to(feats.interactive.image_embed.dtype))
        frame = self._interactive_output(feats, coords, labels, False, dense[None])
        scores = (m.flatten(1) > 0).any(1, keepdim=True).float() * 20.0 - 10.0
        with autocast(self.device, self.precision):
            pointers = self.mux.pointer(frame.pointers, scores)  # absent masks: no-object
        return {
            i: FrameResult(low[k], high[k : k + 1], pointers[k : k + 1], scores[k : k + 1])
            for k, i in enumerate(ids)
        }

    def _interactive_output(
        self,
        feats: MultiplexFeatures,
        coords: Tensor,
        labels: Tensor,
        multimask: bool,
        mask_input: Tensor | None = None,
    ) -> MultiplexFrameOutput:
        """The interactive head's pass for N objects on one frame (coords [1, N, P, 2] model
        pixels, labels [1, N, P], mask_input [1, N, 1, 4h, 4w] or None) as a frame output: the
        best mask by IoU, pointers through the head's `object_pointer_proj`."""
        with autocast(self.device, self.precision):
            out = self.head.predict_masks(
                feats.interactive, coords, labels, mask_input=mask_input, multimask=multimask
            )
            return self.mux.frame_output(
                out.low_res_masks[0],
                out.iou_scores[0],
                out.mask_tokens[0],
                out.object_score_logits[0],
                self.head.object_pointer_proj,
            )

    def _propagated(self, t: int, feats: MultiplexFeatures) -> dict[int, FrameResult]:
        """The objects tracked so far, decoded on `t` from memory (none before the first)."""
        cond = self.bank.cond_frames()
        if self.state is None or not cond:
            return {}
        return _results(self.ids, self._propagate(t, t < cond[0], feats))

    def _grown(self, state: MultiplexState | None, ids: list[int]) -> MultiplexState:
        """`state` with room for `ids` more objects: free slots first, then new buckets."""
        if state is None:
            return MultiplexState.for_objects(len(ids), self.multiplex_count, device=self.device)
        state.add_objects(len(ids))
        return state

    def add_objects(self, ids: list[int]) -> None:
        """Append objects: free slots first, then new buckets. Stored memories are kept (the
        new slots read as empty there), as Meta adds detections to a tracked state."""
        self.refresh()  # stale memories are encoded for the buckets they were made for
        self.state = self._grown(self.state, ids)
        self.ids.extend(ids)

    def free_slots(self) -> int:
        """Slots of the existing buckets that new objects can take without a new bucket."""
        if self.state is None:
            return 0
        return sum(b[: self.state.capacity].count(PADDING) for b in self.state.assignments)

    def remove(self, obj_id: int) -> None:
        """Stop tracking one object: its slot is freed, emptied buckets and their memory go."""
        if obj_id not in self.ids or self.state is None:
            return
        self.refresh()  # stale memories are encoded for the buckets they were made for
        if len(self.ids) == 1:
            self.ids, self.state, self.bank.records = [], None, {}
            return
        index = self.ids.index(obj_id)
        old = MultiplexState(self.state.assignments, device=self.device)
        keep = self.state.remove_objects([index])
        others = [i for i in range(len(self.ids)) if i != index]
        self.bank.remap_pointers(old, self.state, others)
        self.bank.keep_buckets(keep)
        del self.ids[index]
        for f in list(self.bank.records):
            r = self.bank.records[f]
            r.results.pop(obj_id, None)
            r.prompted.discard(obj_id)

    # ------------------------------------------------------------------ propagation
    def cond_frames(self) -> list[int]:
        """The frames holding prompts, in order."""
        return self.bank.cond_frames()

    def step(self, t: int, reverse: bool, anchors: tuple[int, ...] = ()) -> dict[int, FrameResult]:
        """Every object's result on frame `t` (stored on prompted frames, else propagated and
        remembered), by object id; then the memory no later frame reads is dropped."""
        record = self.bank.records.get(t)
        if record is not None and record.cond:
            out = {i: record.results.get(i) or self._absent() for i in self.ids}
        elif self.state is None:
            out = {}
        else:
            feats = self.features(t)
            frame = self._propagate(t, reverse, feats)
            out = _results(self.ids, frame)
            with autocast(self.device, self.precision):
                memory, pos = self.mux.encode_memory(
                    feats.image, frame.high_res_masks, frame.object_score_logits, self.state
                )
            self.bank.records[t] = MultiplexRecord(
                memory, pos, feats.image, feats.image_pos, self.state.mux(frame.pointers)
            )
        self.bank.prune(t, anchors)
        return out

    def propagate_results(self, t: int, reverse: bool) -> dict[int, FrameResult]:
        """Every object's result on `t` from memory (high_res kept), nothing stored."""
        frame = self._propagate(t, reverse, self.features(t))
        results = _results(self.ids, frame)
        for k, r in enumerate(results.values()):
            r.high_res = frame.high_res_masks[k : k + 1]
        return results

    def store(
        self,
        t: int,
        results: dict[int, FrameResult],
        conditioning: set[int] = frozenset(),
        prompted: set[int] = frozenset(),
    ) -> None:
        """Encode frame `t`'s memory from every object's result (by id; high_res logits, else
        low_res upsampled) with the conditioning channel set for `conditioning`, and store it;
        `prompted` objects make it a conditioning frame (their results are kept there)."""
        feats = self.features(t)
        per_object = [results[i] for i in self.ids]
        high = [r.high_res if r.high_res is not None else r.low_res[:, None] for r in per_object]
        sizes = {h.shape[-1] for h in high}
        if len(sizes) > 1:  # mask outputs beside decoded ones: all to the mask size (Meta's)
            side = self.input_mask_size
            high = [
                h
                if h.shape[-1] == side
                else F.interpolate(
                    h.float(), size=(side, side), mode="bilinear", align_corners=False
                )
                for h in high
            ]
        scores = torch.cat([r.score for r in per_object])
        pointers = torch.cat([r.pointer for r in per_object])
        cond = [k for k, i in enumerate(self.ids) if i in conditioning or i in prompted]
        with autocast(self.device, self.precision):
            memory, pos = self.mux.encode_memory(
                feats.image, torch.cat([h.float() for h in high]), scores, self.state, cond
            )
        kept = {i: r for i, r in results.items() if i in self.ids} if prompted else {}
        self.bank.records[t] = MultiplexRecord(
            memory,
            pos,
            feats.image,
            feats.image_pos,
            self.state.mux(pointers.to(memory.dtype)),
            kept,
            set(prompted),
        )

    def _propagate(self, t: int, reverse: bool, feats: MultiplexFeatures) -> MultiplexFrameOutput:
        """Memory attention and the multiplex decoder on `t` for every bucket."""
        self.refresh()
        q = self.bank.query(t, reverse)
        with autocast(self.device, self.precision):
            bank = self.mux.build_memory(q.frames, q.pointers, q.pointer_offsets, q.max_pointers)
            embed = self.mux.attend_memory(feats.image, feats.image_pos, bank)
            return self.mux.propagate(embed, feats.high_res, self.state)

    # ------------------------------------------------------------------ memory
    @torch.inference_mode()
    def refresh(self) -> None:
        """Encode every stale memory (prompted frames changed by clicks since they were last
        read): once per frame, for the buckets as they are now."""
        for f, r in list(self.bank.records.items()):
            if r.stale:
                self.bank.records[f] = self._encode(r)

    def _per_object(self, results: dict[int, FrameResult]) -> list[FrameResult]:
        """Every object's result on a prompted frame, in state order (absent where it has none)."""
        absent = self._absent()
        return [results.get(i) or absent for i in self.ids]

    def _stale(
        self,
        image: Tensor,
        image_pos: Tensor,
        results: dict[int, FrameResult],
        prompted: set[int],
    ) -> MultiplexRecord:
        """A prompted frame's record with its pointers and the objects' results there, its
        memory left to `refresh` (objects without a result count as absent)."""
        pointers = torch.cat([r.pointer for r in self._per_object(results)])
        kept = {i: r for i, r in results.items() if i in self.ids}
        return MultiplexRecord(
            None, None, image, image_pos, self.state.mux(pointers), kept, set(prompted), True
        )

    def _encode(self, record: MultiplexRecord) -> MultiplexRecord:
        """A stale record with every bucket's memory encoded from the objects' results there,
        conditioning channels set for its prompted objects."""
        per_object = self._per_object(record.results)
        low = torch.cat([r.low_res.float() for r in per_object])[:, None]
        size = (self.mux.image_size, self.mux.image_size)
        high = F.interpolate(low, size=size, mode="bilinear", align_corners=False)
        scores = torch.cat([r.score for r in per_object])
        conditioning = [k for k, i in enumerate(self.ids) if i in record.prompted]
        with autocast(self.device, self.precision):
            memory, pos = self.mux.encode_memory(
                record.image, high, scores, self.state, conditioning
            )
        return replace(record, memory=memory, memory_pos=pos, stale=False)

    def _absent(self) -> FrameResult:
        """An object with no output on a prompted frame (it was prompted elsewhere)."""
        side = 4 * self.mux.grid
        d = self.mux.no_object_pointer_linear.in_features
        low = torch.full((1, side, side), NO_OBJECT_SCORE, device=self.device)
        score = torch.full((1, 1), NO_OBJECT_SCORE, device=self.device)
        return FrameResult(low, None, torch.zeros(1, d, device=self.device), score)

    def nbytes(self) -> int:
        """Bytes of the memory bank's tensors and of the current frame's features."""
        if self._cached is None:
            return self.bank.nbytes()
        _, image, f = self._cached
        tensors = [image.features.vit, f.image, f.image_pos, *f.high_res]
        if f.interactive is not None:
            i = f.interactive
            tensors += [i.image_embed, *i.high_res_feats, i.image_pos]
        return self.bank.nbytes() + sum(t.numel() * t.element_size() for t in tensors)


def _results(ids: list[int], frame: MultiplexFrameOutput) -> dict[int, FrameResult]:
    """Per-object results (by id, in `ids` order) of a frame's outputs."""
    return {
        i: FrameResult(
            frame.low_res_masks[k].float(),
            None,
            frame.pointers[k : k + 1],
            frame.object_score_logits[k : k + 1],
        )
        for k, i in enumerate(ids)
    }


__all__ = ["DEFAULT_MAX_NUM_OBJECTS", "MultiplexFeatures", "MultiplexVideo"]
