"""Which plane of which layer the user is looking at, and its pixels as the model sees them."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sam3_napari.convert import (
    default_channels,
    guess_channel_axis,
    image_plane,
    parse_channels,
    plane_index,
    plane_rgb8,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image


@dataclass
class PlaneContext:
    """An Image layer, its channel handling and the current plane (leading-axis index)."""

    image: Image
    axis: int | None
    channels: list[int] | None
    index: tuple[int, ...]
    note: str = ""  # what was guessed for the user (channel axis, channels), shown in the status

    @property
    def key(self) -> Hashable:
        """Embedding-cache key: layer, its data object, plane and channel choice."""
        chans = tuple(self.channels or ())
        return (self.image.unique_id, id(self.image.data), self.index, self.axis, chans)

    @property
    def leading_shape(self) -> tuple[int, ...]:
        """Sizes of the leading (z/t) axes, channel axis excluded."""
        shape = list(self.image.data.shape)
        if self.axis is not None:
            del shape[self.axis % len(shape)]
        return tuple(shape[: len(self.index)])

    def raw(self, index: tuple[int, ...] | None = None) -> np.ndarray:
        """The plane's data as stored: [H, W] or [H, W, C]."""
        idx = self.index if index is None else index
        return image_plane(self.image.data, self.image.rgb, idx, self.axis)

    def rgb8(self, index: tuple[int, ...] | None = None) -> np.ndarray:
        """The plane as uint8 RGB [H, W, 3] (percentile-normalised by sam3_core.formats.images)."""
        return plane_rgb8(self.raw(index), self.channels)

    def stack(self, fixed: tuple[int, ...] = ()) -> Any:
        """The [Z, H, W(, C)] block at the `fixed` leading indices, channels last, as stored
        (a view where the layer's data allows it: numpy, dask)."""
        data = self.image.data
        if self.axis is not None and not self.image.rgb:
            data = np.moveaxis(data, self.axis, -1)
        return data[tuple(fixed)]

    def with_index(self, index: tuple[int, ...]) -> PlaneContext:
        """The same layer and channels on another plane."""
        return PlaneContext(self.image, self.axis, self.channels, tuple(index), self.note)


def plane_context(
    viewer: napari.viewer.Viewer, image: Image | None, axis: int | str | None, channels: str
) -> PlaneContext:
    """The current plane of `image` in the viewer; errors name what the user should change.

    `axis` is a data axis, None (gray or RGB) or "auto": a small last axis (a (256, 256, 5)
    array) is taken as channels; more than three channels default to the first three.
    """
    if image is None:
        raise ValueError(
            "no image chosen: open an image (or File > Open Sample > SAM 3) and pick it in 'image'"
        )
    ndim, notes = image.ndim, []
    if axis == "auto":
        axis = guess_channel_axis(image.data.shape, image.rgb)
        if axis is not None:
            notes.append(f"channel axis {axis} ({image.data.shape[axis]} channels)")
    if axis is not None and (image.rgb or not -ndim <= int(axis) < ndim):
        raise ValueError(
            f"channel axis {axis} does not fit '{image.name}' ({ndim} axes"
            f"{', RGB' if image.rgb else ''}): set 'channel axis' to auto, none or 0..{ndim - 1}"
        )
    keep = [i for i in range(ndim) if axis is None or i != int(axis) % ndim]
    if axis is not None:
        count = image.data.shape[int(axis)]
    else:
        count = image.data.shape[-1] if image.rgb else 1
    chosen = default_channels(count, parse_channels(channels))
    if chosen and any(not -count <= c < count for c in chosen):
        raise ValueError(
            f"channels {chosen} do not exist: '{image.name}' has {count} channel(s) on axis "
            f"{axis}; set 'use' to numbers in 0..{count - 1}"
        )
    if chosen and not channels.strip():
        notes.append(f"using channels {', '.join(map(str, chosen))} (set 'use' to change)")
    point = np.asarray(viewer.dims.point, float)[-ndim:]
    scale, translate = np.asarray(image.scale, float), np.asarray(image.translate, float)
    n_leading = len(keep) - 2
    index = plane_index(point[keep], scale[keep], translate[keep], n_leading)
    shape = [image.data.shape[i] for i in keep][:n_leading]
    index = tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(index, shape))
    axis = None if axis is None else int(axis) % ndim
    return PlaneContext(image, axis, chosen, index, "; ".join(notes))


def fixed_stack_index(ctx: PlaneContext) -> tuple[tuple[int, ...], int]:
    """For a whole-stack run: the other leading indices kept, and the stack length (last axis)."""
    if not ctx.index:
        raise ValueError(
            f"'{ctx.image.name}' has no z or t axis: choose scope 'current plane' or 'tiled'"
        )
    return ctx.index[:-1], ctx.leading_shape[-1]
