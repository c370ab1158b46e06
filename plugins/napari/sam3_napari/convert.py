"""Pure conversions between napari layer data and sam3_core prompts/results (no napari, no model).

napari stores coordinates as (..., row, col) = (..., y, x) in each layer's data space; sam3_core
takes (x, y) pixels of one 2D plane. Leading axes (z, t) pick the plane: a prompt belongs to the
plane its leading coordinates round to.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sam3_core.formats.images import as_rgb8
from sam3_core.results import Exemplar

NEGATIVE_WORDS = frozenset({"0", "false", "neg", "negative", "no", "-", "background"})


def spatial_shape(shape: Sequence[int], rgb: bool, channel_axis: int | None = None) -> tuple:
    """Shape of a Labels layer matching an Image layer: RGB and channel axes dropped."""
    dims = list(shape[:-1] if rgb else shape)
    if channel_axis is not None and not rgb:
        del dims[channel_axis % len(shape)]
    return tuple(int(d) for d in dims)


def labels_geometry(
    shape: Sequence[int],
    scale: Sequence[float],
    translate: Sequence[float],
    rgb: bool,
    channel_axis: int | None = None,
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """(shape, scale, translate) of a Labels layer that lines up with an Image layer.

    RGB drops its axis. A channel axis stays, as one pixel stretched over all C channels
    (scale x C, centred), so the labels keep the image's axes and show on every channel.
    """
    scale, translate = np.asarray(scale, float), np.asarray(translate, float)
    if rgb or channel_axis is None:
        return spatial_shape(shape, rgb), scale, translate
    axis, count = channel_axis % len(shape), int(shape[channel_axis])
    out = [int(d) for d in shape]
    out[axis] = 1
    scale, translate = scale.copy(), translate.copy()
    translate[axis] += (count - 1) / 2 * scale[axis]
    scale[axis] *= count
    return tuple(out), scale, translate


def plane_index(
    world_point: Sequence[float], scale: Sequence[float], translate: Sequence[float], n_leading: int
) -> tuple[int, ...]:
    """The data index of the leading (non-YX) axes at a world position (the viewer's dims)."""
    if n_leading == 0:
        return ()
    point = np.asarray(world_point, float)[-len(scale) :][:n_leading]
    data = (point - np.asarray(translate, float)[:n_leading]) / np.asarray(scale, float)[:n_leading]
    return tuple(int(v) for v in np.rint(data))


def image_plane(
    data: Any, rgb: bool, index: Sequence[int], channel_axis: int | None = None
) -> np.ndarray:
    """One 2D plane of layer data: [H, W] gray, [H, W, C] for RGB or a kept channel axis."""
    if channel_axis is not None and not rgb:
        data = np.moveaxis(np.asarray(data), channel_axis, -1)
        rgb = True
    n_leading = data.ndim - (3 if rgb else 2)
    if len(index) != n_leading:
        raise ValueError(f"plane index {tuple(index)} does not fit data of shape {data.shape}")
    shape = data.shape[:n_leading]
    if any(not 0 <= i < n for i, n in zip(index, shape)):
        raise ValueError(f"plane {tuple(index)} lies outside the image (leading shape {shape})")
    return np.asarray(data[tuple(index)])


def plane_rgb8(plane: np.ndarray, channels: Sequence[int] | None = None) -> np.ndarray:
    """A plane of any dtype/channel count -> uint8 RGB [H, W, 3] (sam3_core's normalisation)."""
    return as_rgb8(plane, channels)


def parse_channels(text: str) -> list[int] | None:
    """'0, 2' -> [0, 2]; '' -> None (automatic). Raises ValueError naming the fix."""
    text = text.strip()
    if not text:
        return None
    try:
        return [int(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(
            f"channels {text!r}: write channel numbers like '0' or '0, 1, 2'"
        ) from None


def to_layer_coords(
    coords: np.ndarray,
    src_scale: Sequence[float],
    src_translate: Sequence[float],
    dst_scale: Sequence[float],
    dst_translate: Sequence[float],
) -> np.ndarray:
    """Data coordinates [N, D] of one layer -> data coordinates of another (scale + translate)."""
    coords = np.asarray(coords, float).reshape(len(coords), -1)
    d = min(coords.shape[1], len(dst_scale))
    coords = coords[:, -d:]
    world = coords * np.asarray(src_scale[-d:], float) + np.asarray(src_translate[-d:], float)
    return (world - np.asarray(dst_translate[-d:], float)) / np.asarray(dst_scale[-d:], float)


def prompt_signs(features: Mapping[str, Any] | None, n: int) -> np.ndarray:
    """bool [n] polarity of each prompt: the 'positive' feature column if any, else all True.

    The column may hold bools, 0/1, or words ('negative', 'neg', 'no', 'background' -> False).
    """
    if features is None or "positive" not in features or n == 0:
        return np.ones(n, bool)
    values = list(features["positive"])
    if len(values) != n:
        raise ValueError(f"the 'positive' feature has {len(values)} values for {n} prompts")

    def sign(v: Any) -> bool:
        if isinstance(v, str):
            return v.strip().lower() not in NEGATIVE_WORDS
        if isinstance(v, float) and np.isnan(v):
            return True  # an unset value counts as positive
        return bool(v)

    return np.array([sign(v) for v in values], bool)


def on_plane(coords: np.ndarray, index: Sequence[int]) -> np.ndarray:
    """bool [N]: which rows of coords [N, D] lie on the plane `index`.

    Coordinates without leading axes (a 2D prompt layer over a stack) lie on every plane.
    """
    coords = np.asarray(coords, float).reshape(len(coords), -1)
    if not len(index) or coords.shape[1] < 2 + len(index):
        return np.ones(len(coords), bool)
    lead = np.rint(coords[:, -2 - len(index) : -2])
    return np.all(lead == np.asarray(index, float), axis=1)


def exemplars_from_shapes(
    shapes: Sequence[np.ndarray], signs: np.ndarray, index: Sequence[int] = ()
) -> list[Exemplar]:
    """Shapes (each [V, D] vertices in image data coords) on the plane -> bounding-box exemplars."""
    out = []
    for verts, positive in zip(shapes, signs):
        verts = np.asarray(verts, float)
        if not on_plane(verts[:1], index)[0]:
            continue
        (y0, x0), (y1, x1) = verts[:, -2:].min(0), verts[:, -2:].max(0)
        if x1 > x0 and y1 > y0:
            out.append(Exemplar((float(x0), float(y0), float(x1), float(y1)), bool(positive)))
    return out


def clicks_from_points(
    coords: np.ndarray, signs: np.ndarray, index: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, D] (image data coords) on the plane -> (xy float32 [P, 2], labels int64 [P])."""
    coords = np.asarray(coords, float).reshape(len(coords), -1)
    keep = on_plane(coords, index)
    xy = coords[keep][:, [-1, -2]].astype(np.float32)
    return xy, np.asarray(signs, bool)[keep].astype(np.int64)


def masks_to_labels(masks: np.ndarray, scores: np.ndarray, first_id: int = 1) -> np.ndarray:
    """bool [N, H, W] masks -> uint32 [H, W] label image, ids first_id.. in order; best on top."""
    masks = np.asarray(masks, bool)
    out = np.zeros(masks.shape[1:], np.uint32)
    for i in np.argsort(np.asarray(scores), kind="stable"):  # lowest score first
        out[masks[i]] = first_id + i
    return out


MAX_GUESSED_CHANNELS = 16


def guess_channel_axis(shape: Sequence[int], rgb: bool) -> int | None:
    """The channel axis napari cannot know: a small last axis after two larger ones, e.g. a
    (256, 256, 5) array is one 5-channel plane, not 256 slices of 256 x 5 pixels. Else None."""
    if rgb or len(shape) < 3:
        return None
    last = int(shape[-1])
    if last <= MAX_GUESSED_CHANNELS and last < min(int(shape[-3]), int(shape[-2])):
        return len(shape) - 1
    return None


def default_channels(count: int, channels: Sequence[int] | None) -> list[int] | None:
    """The channels to show the model: the user's, else all of 1-3, else the first three."""
    if channels is not None:
        return list(channels)
    return None if count <= 3 else [0, 1, 2]


def merge_labels(current: np.ndarray, new: np.ndarray, protected: np.ndarray | None) -> np.ndarray:
    """A new label block that keeps the user's hand-painted pixels (`protected`, bool like
    `current`): elsewhere the new labels, their ids moved above the painted ids so none merge."""
    new = np.asarray(new)
    if protected is None or not protected.any():
        return new.astype(current.dtype, copy=False)
    kept = current[protected]
    offset = int(kept.max()) if kept.size else 0
    shifted = np.where(new > 0, new.astype(np.int64) + offset, 0).astype(current.dtype)
    return np.where(protected, current, shifted)


def replace_object(
    current: np.ndarray, mask: np.ndarray, obj_id: int, protected: np.ndarray | None
) -> np.ndarray:
    """A plane with object `obj_id` replaced by `mask` (bool [H, W]), painted pixels kept."""
    free = np.ones(current.shape, bool) if protected is None else ~protected
    out = current.copy()
    out[(current == obj_id) & free] = 0
    out[np.asarray(mask, bool) & free] = obj_id
    return out
