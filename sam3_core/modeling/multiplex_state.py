"""Which object sits in which slot of which bucket (SAM 3.1's Object Multiplex), and moving
per-object tensors between the object order ("data space") and buckets ("mux space").

`mux`/`demux` copy rows by precomputed indices (Meta multiplies by 0/1 selection matrices; the
copy gives the same values, keeps the input's dtype, and costs one pass over the data instead of
a matmul over every object); padded slots come out as zeros. Slots hold an object index
(0..N-1), `PADDING` (never used) or `REMOVED` (an object that was removed; the slot stays
taken until its bucket empties).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

PADDING = -1
REMOVED = -1116


class MultiplexState:
    """Bucket assignments plus the slot indices that mux/demux copy by, on one device."""

    def __init__(
        self,
        assignments: Sequence[Sequence[int]],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        capacity: int | None = None,
    ) -> None:
        """assignments: one list of slot entries per bucket, all of the bucket size;
        capacity: how many slots per bucket may be filled (default: all); dtype: of
        `mux_matrix` only (mux/demux keep their input's dtype)."""
        self.device, self.dtype = torch.device(device or "cpu"), dtype
        self.capacity = capacity
        self._assign([list(b) for b in assignments])

    @classmethod
    def for_objects(cls, num_objects: int, multiplex_count: int, **kwargs) -> MultiplexState:
        """Objects 0..N-1 in order, ceil(N / multiplex_count) buckets, the last one padded."""
        if num_objects < 1:
            raise ValueError(f"need at least one object to multiplex, got {num_objects}")
        state = cls([[PADDING] * multiplex_count], **kwargs)
        state.add_objects(num_objects)
        return state

    def _assign(self, assignments: list[list[int]]) -> None:
        if not assignments:
            raise ValueError("a multiplex state needs at least one bucket")
        size = len(assignments[0])
        if any(len(b) != size for b in assignments):
            raise ValueError(f"every bucket needs {size} slots: {assignments}")
        capacity = self.capacity or size
        ids = [i for b in assignments for i in b if i >= 0]
        if sorted(ids) != list(range(len(ids))):
            raise ValueError(f"object indices must be 0..N-1, each once: {assignments}")
        if any(sum(i != PADDING for i in b) > capacity for b in assignments):
            raise ValueError(f"a bucket holds more than {capacity} objects: {assignments}")
        self.assignments = assignments
        self.multiplex_count, self.capacity = size, capacity
        self.num_buckets, self.num_objects = len(assignments), len(ids)
        flat = [i for b in assignments for i in b]
        slot_of = {i: k for k, i in enumerate(flat) if i >= 0}
        # object_slots[i]: the flat slot (bucket * multiplex_count + slot) that holds object i
        self.object_slots = torch.tensor(
            [slot_of[i] for i in range(self.num_objects)], device=self.device, dtype=torch.long
        )
        self.valid_slots = torch.tensor([i >= 0 for i in flat], device=self.device)
        self.empty_slots = (~self.valid_slots).nonzero()[:, 0]  # padding and removed slots

    @property
    def mux_matrix(self) -> Tensor:
        """[num_buckets * multiplex_count, N] 0/1 selection matrix (Meta's form of `mux`)."""
        out = torch.zeros(
            self.num_buckets * self.multiplex_count,
            self.num_objects,
            device=self.device,
            dtype=self.dtype,
        )
        out[self.object_slots, torch.arange(self.num_objects, device=self.device)] = 1.0
        return out

    @property
    def demux_matrix(self) -> Tensor:
        """[N, num_buckets * multiplex_count]: the transpose of `mux_matrix`."""
        return self.mux_matrix.T.contiguous()

    def mux(self, x: Tensor) -> Tensor:
        """[N, ...] per object -> [num_buckets, multiplex_count, ...] (padding zeros)."""
        if x.shape[0] != self.num_objects:
            raise ValueError(f"mux needs {self.num_objects} objects, got {x.shape[0]}")
        out = x.new_zeros(self.num_buckets * self.multiplex_count, *x.shape[1:])
        out.index_copy_(0, self.object_slots.to(x.device), x)
        return out.view(self.num_buckets, self.multiplex_count, *x.shape[1:])

    def demux(self, x: Tensor) -> Tensor:
        """[num_buckets, multiplex_count, ...] -> [N, ...] in object order."""
        if tuple(x.shape[:2]) != (self.num_buckets, self.multiplex_count):
            raise ValueError(
                f"demux needs [{self.num_buckets}, {self.multiplex_count}, ...], got "
                f"{tuple(x.shape)}"
            )
        flat = x.reshape(self.num_buckets * self.multiplex_count, *x.shape[2:])
        return flat.index_select(0, self.object_slots.to(x.device))

    def valid_mask(self) -> Tensor:
        """[num_buckets, multiplex_count] bool: slots that hold a live object."""
        return self.valid_slots.view(self.num_buckets, self.multiplex_count).clone()

    def add_objects(self, count: int) -> None:
        """Append `count` objects (indices N..N+count-1): free slots first, then new buckets."""
        nxt = iter(range(self.num_objects, self.num_objects + count))
        pending = count
        assignments = [list(b) for b in self.assignments]
        for bucket in assignments:
            free = [i for i, v in enumerate(bucket[: self.capacity]) if v == PADDING]
            for slot in free[:pending]:
                bucket[slot] = next(nxt)
                pending -= 1
        while pending:
            bucket = [PADDING] * self.multiplex_count
            for slot in range(min(pending, self.capacity)):
                bucket[slot] = next(nxt)
                pending -= 1
            assignments.append(bucket)
        self._assign(assignments)

    def remove_objects(self, indices: Sequence[int]) -> list[int]:
        """Mark objects removed, drop buckets left without live objects and renumber the rest
        0..N'-1 in their old order; return the indices of the buckets kept."""
        gone = set(indices)
        unknown = gone - {i for b in self.assignments for i in b if i >= 0}
        if unknown:
            raise ValueError(f"objects {sorted(unknown)} are not in the multiplex state")
        marked = [[REMOVED if i in gone else i for i in b] for b in self.assignments]
        keep = [k for k, b in enumerate(marked) if any(i >= 0 for i in b)]
        if not keep:
            raise ValueError("removing every object leaves no bucket; start a new state")
        kept = [marked[k] for k in keep]
        order = {old: new for new, old in enumerate(sorted(i for b in kept for i in b if i >= 0))}
        self._assign([[order.get(i, i) for i in b] for b in kept])
        return keep
