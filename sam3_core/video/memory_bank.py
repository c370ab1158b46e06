"""The bounded video memory bank: what the tracker may still read, per object, and nothing more.

SAM 2's rules (as transformers' `Sam3TrackerVideoModel` applies them): a frame attends to up to
`max_cond_frame_num` prompted (conditioning) frames closest to it, to the previous
`num_memory_frames - 1` tracked frames, and to object pointers of up to
`max_object_pointers_in_encoder - 1` previous frames. Tracked frames further away than that
are dropped (spatial memory first, then the pointer), so memory does not grow with the video.

Conditioning frames come from prompts (clicks, boxes, masks, the frame a concept track starts
on), which are kept, and from concept tracking's periodic re-conditioning on strong
detections, of which only the newest `max_reconditioned_frames` stay conditioning frames
(older ones become ordinary tracked frames and are forgotten as they age): the reference
keeps them all, so its memory and its object pointers grow with the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class FrameMemory:
    """One object's memory of one frame.

    memory: [1, M, h, w] (bf16, as the reference stores it) and memory_pos [1, M, h, w], or
    None once only the pointer is still readable; pointer: [1, C]; object_score: [1, 1] logit;
    low_res: [1, 4h, 4w] mask logits, kept only for prompted frames (reused when propagation
    passes them); reverse: the direction the frame was tracked in; reconditioned: a
    conditioning frame written by re-conditioning on a detection, not by a prompt.
    """

    memory: Tensor | None
    memory_pos: Tensor | None
    pointer: Tensor
    object_score: Tensor
    low_res: Tensor | None = None
    reverse: bool = False
    reconditioned: bool = False

    def nbytes(self) -> int:
        """Bytes held by this record's tensors."""
        tensors = (self.memory, self.memory_pos, self.pointer, self.object_score, self.low_res)
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass
class FrameSpans:
    """A set of frame indices stored as sorted, merged [start, stop) spans (O(1) for tracks)."""

    spans: list[list[int]] = field(default_factory=list)

    def add(self, t: int) -> None:
        """Insert frame `t`, merging neighbouring spans."""
        for span in self.spans:
            if span[0] <= t < span[1]:
                return
            if t == span[1] or t == span[0] - 1:
                span[0], span[1] = min(span[0], t), max(span[1], t + 1)
                self._merge()
                return
        self.spans.append([t, t + 1])
        self._merge()

    def _merge(self) -> None:
        self.spans.sort()
        merged: list[list[int]] = []
        for s in self.spans:
            if merged and s[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], s[1])
            else:
                merged.append(list(s))
        self.spans = merged

    def __contains__(self, t: int) -> bool:
        return any(s[0] <= t < s[1] for s in self.spans)


@dataclass
class ObjectMemory:
    """The memory of one tracked object: prompted frames, recent tracked frames, tracked set."""

    cond: dict[int, FrameMemory] = field(default_factory=dict)
    recent: dict[int, FrameMemory] = field(default_factory=dict)
    tracked: FrameSpans = field(default_factory=FrameSpans)

    def records(self) -> list[FrameMemory]:
        """Every stored frame record: the prompted frames', then the recent tracked ones'."""
        return [*self.cond.values(), *self.recent.values()]

    def nbytes(self) -> int:
        """Bytes held by this object's stored tensors."""
        return sum(m.nbytes() for m in self.records())


@dataclass
class MemoryQuery:
    """What one frame reads: spatial (offset, memory, pos) triples, pointers [T, 1, C] with their
    temporal offsets, and the normaliser for those offsets."""

    spatial: list[tuple[int, Tensor, Tensor]]
    pointers: Tensor | None
    pointer_offsets: list[int]
    max_pointers: int


@dataclass
class MemoryBank:
    """Selection and pruning rules over `ObjectMemory`, for a video of `num_frames` frames."""

    num_memory_frames: int
    max_cond_frames: int
    max_object_pointers: int
    num_frames: int
    device: torch.device
    storage: torch.device
    max_kept_cond_frames: int | None = None
    max_reconditioned_frames: int | None = 4

    @property
    def window(self) -> int:
        """How many frames back a tracked frame can still be read from."""
        return max(self.num_memory_frames - 1, self.max_object_pointers - 1, 1)

    def select_cond(self, obj: ObjectMemory, t: int) -> tuple[dict, dict]:
        """Closest prompted frames to `t` (before, after, then by distance): (selected, others)."""
        cond = obj.cond
        if self.max_cond_frames == -1 or len(cond) <= self.max_cond_frames:
            return cond, {}
        chosen: dict[int, FrameMemory] = {}
        before = max((f for f in cond if f < t), default=None)
        after = min((f for f in cond if f >= t), default=None)
        for f in (before, after):
            if f is not None:
                chosen[f] = cond[f]
        rest = sorted((f for f in cond if f not in chosen), key=lambda f: abs(f - t))
        for f in rest[: self.max_cond_frames - len(chosen)]:
            chosen[f] = cond[f]
        return chosen, {f: m for f, m in cond.items() if f not in chosen}

    def query(self, obj: ObjectMemory, t: int, reverse: bool) -> MemoryQuery:
        """The memory tokens frame `t` attends to, in the reference's order."""
        if not obj.cond:
            raise ValueError(
                "This object has no prompted frame to track from; add_prompt on a frame first."
            )
        selected, unselected = self.select_cond(obj, t)
        spatial = [(0, *self._load(m)) for m in selected.values()]
        sign = -1 if reverse else 1
        for offset in range(self.num_memory_frames - 1, 0, -1):
            f = t - sign * offset
            m = obj.recent.get(f, unselected.get(f))
            if m is not None and m.memory is not None:
                spatial.append((offset, *self._load(m)))
        max_pointers = min(self.num_frames, self.max_object_pointers)
        offsets, pointers = [], []
        for f, m in obj.cond.items():
            if (f >= t) if reverse else (f <= t):
                offsets.append((t - f) * sign)
                pointers.append(self._on_device(m.pointer))
        for step in range(1, max_pointers):
            f = t - sign * step
            if not 0 <= f < self.num_frames:
                break
            if f in obj.recent:
                offsets.append(step)
                pointers.append(self._on_device(obj.recent[f].pointer))
        stacked = torch.stack(pointers) if pointers else None
        return MemoryQuery(spatial, stacked, offsets, max_pointers)

    def _load(self, m: FrameMemory) -> tuple[Tensor, Tensor]:
        return self._on_device(m.memory), self._on_device(m.memory_pos)

    def _on_device(self, t: Tensor) -> Tensor:
        # `.to` is a no-op when storage is the device, but costs a dispatch per call
        return t if self.storage == self.device else t.to(self.device)

    def store(self, obj: ObjectMemory, t: int, m: FrameMemory, cond: bool) -> None:
        """Record frame `t` (memory moved to the storage device) as a conditioning frame
        (prompted, or re-conditioned when `m.reconditioned`) or as a tracked frame."""
        if m.memory is not None:
            m.memory = m.memory.to(self.storage, torch.bfloat16)
            m.memory_pos = m.memory_pos.to(self.storage)
        if cond:
            old = obj.cond.get(t)
            if old is not None and not old.reconditioned:
                m.reconditioned = False  # re-conditioning a prompted frame keeps it prompted
            obj.cond[t] = m
            obj.recent.pop(t, None)
            self._cap_reconditioned(obj, t)
            self._cap_cond(obj, t)
        else:
            obj.recent[t] = m
            obj.tracked.add(t)

    def _cap_reconditioned(self, obj: ObjectMemory, t: int) -> None:
        """Keep the `max_reconditioned_frames` re-conditioned frames closest to `t` (the newest
        when propagating); the others become ordinary tracked frames."""
        cap = self.max_reconditioned_frames
        if cap is None:
            return
        frames = [f for f, m in obj.cond.items() if m.reconditioned]
        for f in sorted(frames, key=lambda f: (abs(f - t), f))[cap:]:
            m = obj.cond.pop(f)
            m.reconditioned, m.low_res = False, None
            obj.recent[f] = m
            obj.tracked.add(f)

    def _cap_cond(self, obj: ObjectMemory, t: int) -> None:
        cap = self.max_kept_cond_frames
        while cap is not None and len(obj.cond) > max(cap, 1):
            del obj.cond[max(obj.cond, key=lambda f: (abs(f - t), f))]

    def prune(self, obj: ObjectMemory, t: int, anchors: tuple[int, ...] = ()) -> None:
        """Forget tracked frames no frame near `t` (or near an anchor) can read any more."""
        spatial, window = self.num_memory_frames - 1, self.window
        for f in list(obj.recent):
            dist = min(abs(f - c) for c in (t, *anchors))
            if dist > window:
                del obj.recent[f]
            elif dist > spatial and obj.recent[f].low_res is None:
                obj.recent[f].memory = obj.recent[f].memory_pos = None
