"""Hand edits survive: pixels the user paints into our Labels layers are never overwritten by a
later run, and a run's write is one undo step (Ctrl+Z on the layer takes the run back), up to
`UNDO_MAX_PIXELS` changed pixels (a huge tiled plane is written without history)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sam3_napari.convert import merge_labels, replace_object

if TYPE_CHECKING:
    from napari.layers import Labels

OWNER = "sam3_napari"  # key of our tag in layer.metadata (shared with sam3_napari.layers)
UNDO_MAX_PIXELS = 16_000_000  # a run changing more pixels is written without an undo step


def _tag(layer: Labels) -> dict:
    return layer.metadata[OWNER]


def track_edits(layer: Labels) -> None:
    """Record every paint, fill or erase stroke the user makes in `layer` (not our writes)."""
    layer.events.paint.connect(lambda event: mark_painted(layer, event.value))


def mark_painted(layer: Labels, atoms: list[Any]) -> None:
    """Mark the pixels of napari history atoms as painted by hand (a bool mask in our tag).

    An atom is napari's masked paint record (`slice_key`, `mask`) or a tuple whose first item
    holds the changed indices (from `Labels.data_setitem`)."""
    tag = _tag(layer)
    if tag.get("writing"):
        return
    if tag.get("painted") is None or tag["painted"].shape != layer.data.shape:
        tag["painted"] = np.zeros(layer.data.shape, bool)  # new, or the data was replaced
    painted = tag["painted"]
    for atom in atoms:
        if hasattr(atom, "slice_key"):
            region = painted[atom.slice_key]  # a view: basic slicing
            if atom.mask is None:
                region[...] = True
            else:
                region[atom.mask] = True
        else:
            painted[tuple(atom[0])] = True


def _spatial(layer: Labels, array: Any) -> Any:
    """`array` (shaped like the layer's data) without its one-pixel channel axis, a view."""
    axis = _tag(layer).get("channel_axis")
    return array if axis is None else array[(slice(None),) * axis + (0,)]


def painted(layer: Labels, index: tuple = ()) -> np.ndarray | None:
    """bool mask of hand-painted pixels at the leading `index`, or None when none were."""
    mask = _tag(layer).get("painted")
    return None if mask is None else _spatial(layer, mask)[tuple(index)]


def current(layer: Labels, index: tuple = ()) -> np.ndarray:
    """The layer's labels at the leading `index` (channel axis left out), as numpy."""
    return np.asarray(_spatial(layer, layer.data)[tuple(index)])


def _write(layer: Labels, index: tuple, block: np.ndarray) -> int:
    """Set the labels at `index` to `block` as one undo step; returns how many pixels changed."""
    changed = np.nonzero(current(layer, index) != block)
    if not changed[0].size:
        return 0
    if changed[0].size > UNDO_MAX_PIXELS:  # napari's history would hold ~24 bytes a pixel
        _spatial(layer, layer.data)[tuple(index)] = block
        layer.refresh()
        return int(changed[0].size)
    where = [np.full(changed[0].shape, i, np.intp) for i in index] + list(changed)
    axis = _tag(layer).get("channel_axis")
    if axis is not None:
        where.insert(axis, np.zeros(changed[0].shape, np.intp))
    tag = _tag(layer)
    tag["writing"] = True
    try:
        with layer.block_history():
            layer.data_setitem(tuple(where), block[changed])
    finally:
        tag["writing"] = False
    return int(changed[0].size)


def write_labels(layer: Labels, index: tuple, labels: np.ndarray) -> int:
    """Write a label plane or block at `index`, keeping hand-painted pixels (undoable)."""
    merged = merge_labels(current(layer, index), labels, painted(layer, index))
    return _write(layer, index, merged)


def write_object(layer: Labels, index: tuple, mask: np.ndarray, obj_id: int) -> int:
    """Put one object (bool [H, W]) on a plane under `obj_id`, replacing its earlier mask
    except where the user painted (undoable)."""
    plane = replace_object(current(layer, index), mask, obj_id, painted(layer, index))
    return _write(layer, index, plane)
