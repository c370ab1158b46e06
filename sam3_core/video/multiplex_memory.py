"""SAM 3.1's video memory bank: one record per frame holding every bucket, and Meta's rule for
what a frame reads (up to 4 closest conditioning frames, the frames 1..6 back, object pointers
of the conditioning frames and of the frames 1..15 back). Pruned as tracking moves on, so its
size does not grow with the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from sam3_core.modeling.multiplex_state import MultiplexState
from sam3_core.modeling.multiplex_tracker import MemoryFrame
from sam3_core.video.memory_bank import MemoryBank, ObjectMemory
from sam3_core.video.state import FrameResult


@dataclass
class MultiplexRecord:
    """One frame's memory for all buckets.

    memory / memory_pos: [B, C, h, w] from `MultiplexTracker.encode_memory` (None once only
    the pointers are still read); image / image_pos: [1, C, h, w] the frame's propagation-neck
    level; pointers: [B, m, C] object pointers in mux space. A conditioning (prompted) frame
    also keeps each object's output there (`results`, by object id) and the ids prompted there
    (`prompted`), to re-encode its memory when objects come or go. `stale`: the memory is not
    encoded yet (a click changed the frame or the buckets); it is encoded once, before it is
    read, however many clicks came first.
    """

    memory: Tensor | None
    memory_pos: Tensor | None
    image: Tensor | None
    image_pos: Tensor | None
    pointers: Tensor
    results: dict[int, FrameResult] = field(default_factory=dict)
    prompted: set[int] = field(default_factory=set)
    stale: bool = False

    @property
    def cond(self) -> bool:
        return bool(self.prompted)

    def nbytes(self) -> int:
        """Bytes held by this record's tensors."""
        tensors = [self.memory, self.memory_pos, self.image, self.image_pos, self.pointers]
        for r in self.results.values():
            tensors += [r.low_res, r.pointer, r.score]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass
class MultiplexQuery:
    """What one frame reads: memory frames (conditioning first, then oldest to newest), pointers
    [T, B, m, C] with their frame offsets, and the offsets' normaliser."""

    frames: list[MemoryFrame]
    pointers: Tensor | None
    pointer_offsets: list[int]
    max_pointers: int


@dataclass
class MultiplexBank:
    """The records of one video of `num_frames` frames and the rules over them."""

    num_memory_frames: int
    max_cond_frames: int
    max_object_pointers: int
    num_frames: int
    records: dict[int, MultiplexRecord] = field(default_factory=dict)

    @property
    def max_pointers(self) -> int:
        """The pointer window: frames back whose pointers are read, plus one."""
        return min(self.num_frames, self.max_object_pointers)

    def cond_frames(self) -> list[int]:
        """The prompted frames, in order."""
        return sorted(f for f, r in self.records.items() if r.cond)

    def query(self, t: int, reverse: bool) -> MultiplexQuery:
        """The memory frame `t` attends to, in Meta's order."""
        cond = {f: r for f, r in self.records.items() if r.cond}
        if not cond:
            raise ValueError("nothing to track from: add_prompt on a frame first")
        # the same choice as SAM 3's bank: the closest before, after, then by distance
        rule = MemoryBank(
            num_memory_frames=self.num_memory_frames,
            max_cond_frames=self.max_cond_frames,
            max_object_pointers=self.max_object_pointers,
            num_frames=self.num_frames,
            device=torch.device("cpu"),
            storage=torch.device("cpu"),
        )
        selected, unselected = rule.select_cond(ObjectMemory(cond=cond), t)
        sign = -1 if reverse else 1
        frames = [self._frame(r, (t - f) * sign, True) for f, r in sorted(selected.items())]
        for back in range(self.num_memory_frames - 1, 0, -1):
            f = t - sign * back
            r = self.records.get(f)
            if r is not None and r.memory is not None and (not r.cond or f in unselected):
                frames.append(self._frame(r, back, False))
        offsets = [abs(t - f) for f in sorted(selected)]
        pointers = [selected[f].pointers for f in sorted(selected)]
        for back in range(1, self.max_pointers):
            f = t - sign * back
            r = self.records.get(f)
            if r is not None and (not r.cond or f in unselected):
                offsets.append(back)
                pointers.append(r.pointers)
        return MultiplexQuery(frames, torch.stack(pointers), offsets, self.max_pointers)

    @staticmethod
    def _frame(r: MultiplexRecord, distance: int, cond: bool) -> MemoryFrame:
        if r.stale:
            raise ValueError("a prompted frame's memory was read before it was encoded")
        if r.memory is None or r.image is None:
            raise ValueError("a memory frame was pruned while still needed")
        return MemoryFrame(distance, cond, r.memory, r.memory_pos, r.image, r.image_pos)

    def prune(self, t: int, anchors: tuple[int, ...] = ()) -> None:
        """Drop what no later frame of this pass (or of one starting at an anchor) reads:
        spatial memory past 6 frames away, whole tracked records past the pointer window.
        Prompted frames are kept."""
        near = (t, *anchors)
        for f in list(self.records):
            r = self.records[f]
            if r.cond:
                continue
            away = min(abs(f - a) for a in near)
            if away >= self.max_pointers - 1 and away >= self.num_memory_frames - 1:
                del self.records[f]
            elif away >= self.num_memory_frames - 1:
                self.records[f] = replace(
                    r, memory=None, memory_pos=None, image=None, image_pos=None
                )

    def drop_tracked(self) -> None:
        """Forget every tracked (not prompted) frame: after the objects change, their memories
        no longer match the buckets; the next propagation recomputes them."""
        self.records = {f: r for f, r in self.records.items() if r.cond}

    def remap_pointers(self, old: MultiplexState, new: MultiplexState, keep: list[int]) -> None:
        """Move every record's pointers from `old`'s buckets to `new`'s, keeping the old
        objects `keep` (in order; the new state's objects past them get zero pointers)."""
        for r in self.records.values():
            per_object = old.demux(r.pointers)[keep]
            pad = new.num_objects - per_object.shape[0]
            if pad:
                per_object = torch.cat(
                    [per_object, per_object.new_zeros(pad, *per_object.shape[1:])]
                )
            r.pointers = new.mux(per_object)

    def keep_buckets(self, keep: list[int]) -> None:
        """After objects were removed: keep only the memory of the buckets `keep`."""
        for r in self.records.values():
            if r.memory is not None:
                r.memory, r.memory_pos = r.memory[keep], r.memory_pos[keep]

    def nbytes(self) -> int:
        """Bytes held by every record."""
        return sum(r.nbytes() for r in self.records.values())


__all__ = ["MultiplexBank", "MultiplexQuery", "MultiplexRecord"]
