"""Reorder the axes of (lazy) image arrays: 'TZCYX' files to the 'ZYX(C)' stacks we segment."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class AxesView:
    """A lazy reordering of an array's axes: slicing reads only the selected block."""

    def __init__(
        self, source, order: list[int], squeeze: Mapping[int, int], expand: list[int]
    ) -> None:
        self.source, self._order, self._squeeze, self._expand = source, order, squeeze, expand
        kept = [source.shape[i] for i in order]
        for pos in expand:
            kept.insert(pos, 1)
        self.shape, self.dtype, self.ndim = tuple(kept), np.dtype(source.dtype), len(kept)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim or not all(isinstance(k, (int, np.integer, slice)) for k in key):
            raise IndexError(f"index an AxesView with ints and slices for its {self.ndim} axes")
        own = [k for pos, k in enumerate(key) if pos not in self._expand]
        src_key: list = [slice(None)] * self.source.ndim
        for i, at in self._squeeze.items():
            src_key[i] = at
        for i, k in zip(self._order, own):
            src_key[i] = k
        block = np.asarray(self.source[tuple(src_key)])
        wanted = [i for i, k in zip(self._order, own) if isinstance(k, slice)]
        block = np.transpose(block, [sorted(wanted).index(i) for i in wanted])
        for pos, k in enumerate(key):
            if pos in self._expand and isinstance(k, slice):
                at = sum(isinstance(q, slice) for q in key[:pos])
                block = np.expand_dims(block, at)
        return block


def _parse_want(want: str) -> tuple[str, set[str]]:
    """'ZYX(C)' -> ('ZYXC', {'C'}): letters in parentheses are optional."""
    letters, optional, inside = [], set(), False
    for ch in want.upper():
        if ch in "()":
            inside = ch == "("
        elif ch.strip():
            letters.append(ch)
            if inside:
                optional.add(ch)
    return "".join(letters), optional


def to_axes(arr, axes: str, want: str = "ZYX(C)", select: Mapping[str, int] | None = None):
    """Reorder an array from its `axes` (e.g. 'TZCYX') to `want` (e.g. 'ZYX(C)', 'TYXC').

    Letters in parentheses are optional (kept when present); a missing required axis is added
    with size 1; an axis not wanted is dropped: at the index `select` gives it (e.g.
    select={'T': 0}, the first time point), else it must have size 1. numpy arrays come back
    as views, lazy arrays (zarr, memmap-like) as an `AxesView` that reads on slicing.
    """
    axes = axes.upper().replace("S", "C")
    order_s, optional = _parse_want(want)
    select = {k.upper().replace("S", "C"): v for k, v in (select or {}).items()}
    if len(axes) != arr.ndim or len(set(axes)) != len(axes):
        raise ValueError(
            f"axes={axes!r} does not fit an array of shape {tuple(arr.shape)}: give one distinct "
            f"letter per axis ({arr.ndim}), e.g. 'TZCYX'"
        )
    if len(set(order_s)) != len(order_s):
        raise ValueError(f"want={want!r} repeats an axis; give each letter once, e.g. 'ZYX(C)'")
    for letter, at in select.items():
        if letter not in axes or letter in order_s:
            raise ValueError(
                f"select={{{letter!r}: {at}}}: select picks one entry of an axis of axes={axes!r} "
                f"that want={want!r} drops"
            )
        n = arr.shape[axes.index(letter)]
        if not isinstance(at, (int, np.integer)) or not -n <= at < n:
            raise ValueError(f"select={{{letter!r}: {at!r}}}: axis {letter} has entries 0..{n - 1}")
    for pos, letter in enumerate(axes):
        if letter not in order_s and letter not in select and arr.shape[pos] != 1:
            raise ValueError(
                f"axis {letter} has {arr.shape[pos]} entries but want={want!r} has no {letter}: "
                f"pick one with select={{{letter!r}: i}} or add {letter} to want"
            )
    present = [a for a in order_s if a in axes or a not in optional]
    order = [axes.index(a) for a in present if a in axes]
    squeeze = {
        i: int(select.get(a, 0)) % arr.shape[i] for i, a in enumerate(axes) if a not in present
    }
    expand = [pos for pos, a in enumerate(present) if a not in axes]
    if isinstance(arr, np.ndarray):
        key = tuple(squeeze.get(i, slice(None)) for i in range(arr.ndim))
        kept = [i for i in range(arr.ndim) if i not in squeeze]
        out = np.transpose(arr[key], [kept.index(i) for i in order])
        for pos in expand:
            out = np.expand_dims(out, pos)
        return out
    return AxesView(arr, order, squeeze, expand)
