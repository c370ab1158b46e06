"""A byte-bounded, thread-safe LRU of tensor dicts (one dict per image key)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping

import torch

Entry = dict[str, torch.Tensor]


def entry_bytes(entry: Mapping[str, torch.Tensor]) -> int:
    """Bytes held by the tensors of an entry."""
    return sum(t.numel() * t.element_size() for t in entry.values())


class MemoryLRU:
    """Keeps the most recently used entries while their bytes stay within `max_bytes`.

    An entry larger than the whole bound is not kept. `get` returns a new dict of the same
    tensors: callers must not modify the tensors in place.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0 keeps nothing); got {max_bytes}.")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[str, tuple[Entry, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held now (always <= max_bytes)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def keys(self) -> list[str]:
        """Keys held, least recently used first."""
        with self._lock:
            return list(self._entries)

    def size_of(self, key: str) -> int | None:
        """Bytes of one entry, or None if it is not held."""
        with self._lock:
            held = self._entries.get(key)
            return None if held is None else held[1]

    def get(self, key: str) -> Entry | None:
        """The entry (marked most recently used), or None."""
        with self._lock:
            held = self._entries.get(key)
            if held is None:
                return None
            self._entries.move_to_end(key)
            return dict(held[0])

    def extend(self, key: str, parts: Mapping[str, torch.Tensor]) -> bool:
        """Add `parts` to the entry held under `key` (False, and nothing kept, if none is)."""
        with self._lock:
            if key not in self._entries:
                return False
            self._store(key, parts, merge=True)
            return True

    def put(self, key: str, entry: Mapping[str, torch.Tensor], merge: bool = False) -> None:
        """Keep `entry` under `key` (replacing it, or with `merge` adding to what is held)."""
        with self._lock:
            self._store(key, entry, merge)

    def _store(self, key: str, entry: Mapping[str, torch.Tensor], merge: bool) -> None:
        """`put` under the lock, which the caller holds."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        new = {**old[0], **entry} if merge and old is not None else dict(entry)
        size = entry_bytes(new)
        if size > self.max_bytes:  # too large to keep: keep what was held
            if old is not None:
                self._entries[key] = old
                self._bytes += old[1]
            return
        self._entries[key] = (new, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self._bytes -= dropped
