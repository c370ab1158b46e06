"""napari layer plumbing: prompt layers in, our Labels layers out (found by metadata, not name)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sam3_napari.convert import (
    clicks_from_points,
    exemplars_from_shapes,
    labels_geometry,
    prompt_signs,
    to_layer_coords,
)
from sam3_napari.edits import OWNER, track_edits

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Points, Shapes

    from sam3_core.results import Exemplar

POSITIVE, NEGATIVE = "lime", "magenta"


def _polarity_features() -> pd.DataFrame:
    return pd.DataFrame({"positive": pd.Categorical([], categories=[True, False])})


def add_prompt_layers(viewer: napari.viewer.Viewer, ndim: int) -> tuple[Shapes, Points]:
    """A Shapes layer for exemplar boxes and a Points layer for clicks, coloured by polarity."""
    shapes = viewer.add_shapes(
        ndim=ndim,
        name="SAM3 exemplars",
        features=_polarity_features(),
        edge_color="positive",
        edge_color_cycle=[POSITIVE, NEGATIVE],
        face_color="transparent",
        edge_width=2,
    )
    points = viewer.add_points(
        np.zeros((0, ndim)),
        name="SAM3 clicks",
        features=_polarity_features(),
        face_color="positive",
        face_color_cycle={True: POSITIVE, False: NEGATIVE},
        border_color="white",
        size=6,
    )
    return shapes, points


def set_polarity(layers: list[Any], positive: bool) -> None:
    """Make the next prompts drawn in these layers positive or negative."""
    for layer in layers:
        if layer is not None and "positive" in layer.features:
            layer.feature_defaults = {"positive": positive}


def _spatial(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(layer.scale, float), np.asarray(layer.translate, float)


def _image_coords(layer: Any, image: Image, coords: np.ndarray, drop: int | None) -> np.ndarray:
    out = to_layer_coords(coords, *_spatial(layer), *_spatial(image))
    if drop is not None and out.shape[1] == image.ndim:
        out = np.delete(out, drop % image.ndim, axis=1)
    return out


def exemplars_on_plane(
    shapes: Shapes | None, image: Image, index: tuple, drop: int | None = None
) -> list[Exemplar]:
    """The Shapes layer's boxes on the current plane, in the image's pixel coordinates."""
    if shapes is None or not len(shapes.data):
        return []
    verts = [_image_coords(shapes, image, v, drop) for v in shapes.data]
    return exemplars_from_shapes(verts, prompt_signs(shapes.features, len(verts)), index)


def clicks_on_plane(
    points: Points | None, image: Image, index: tuple, drop: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The Points layer's clicks on the current plane: (xy [P, 2], labels [P]) in image pixels."""
    if points is None or not len(points.data):
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    coords = _image_coords(points, image, points.data, drop)
    return clicks_from_points(coords, prompt_signs(points.features, len(coords)), index)


def tag_of(layer: Any) -> dict | None:
    """Our tag on a layer, or None for a user's layer."""
    tag = getattr(layer, "metadata", {}).get(OWNER)
    return tag if isinstance(tag, dict) else None


def output_key(source: Image, kind: str, prompt: str, channel_axis: int | None = None) -> dict:
    """What identifies one of our output layers of `source`: kind, prompt, channel axis, shape."""
    axis = None if channel_axis is None else channel_axis % source.ndim
    shape, _, _ = labels_geometry(
        source.data.shape, source.scale, source.translate, source.rgb, axis
    )
    return {"kind": kind, "prompt": prompt, "channel_axis": axis, "shape": shape}


def find_output(viewer: napari.viewer.Viewer, source: Image, key: dict) -> Labels | None:
    """Our Labels layer for this image and prompt `key` (see `output_key`)."""
    for layer in viewer.layers:
        tag = tag_of(layer)
        if (
            tag
            and tag.get("source") == source.unique_id
            and all(tag.get(k) == v for k, v in key.items())
            and tuple(layer.data.shape) == tuple(key["shape"])  # never a stale shape
        ):
            return layer
    return None


def output_layer(
    viewer: napari.viewer.Viewer,
    source: Image,
    kind: str,
    prompt: str,
    name: str,
    channel_axis: int | None = None,
) -> Labels:
    """Our Labels layer for this image and prompt: reused when it fits, else created.

    A new layer does not take the selection: the prompt layer the user clicks or draws in
    stays active (and in its mode), so the next click adds a prompt instead of panning.
    """
    key = output_key(source, kind, prompt, channel_axis)
    layer = find_output(viewer, source, key)
    if layer is not None:
        return layer
    shape, scale, translate = labels_geometry(
        source.data.shape, source.scale, source.translate, source.rgb, key["channel_axis"]
    )
    active = viewer.layers.selection.active
    layer = viewer.add_labels(
        np.zeros(shape, np.uint32),
        name=name,
        scale=scale,
        translate=translate,
        metadata={OWNER: {"source": source.unique_id, **key}},
        opacity=0.6,
    )
    track_edits(layer)
    if active is not None:
        viewer.layers.selection.active = active
    return layer


def channels_to_slider(viewer: napari.viewer.Viewer, image: Image, channel_axis: int) -> bool:
    """Show an image's channel axis on a slider, not as a displayed (spatial) axis, so the
    image and our labels appear as planes; returns True when the view changed."""
    world = channel_axis % image.ndim + viewer.dims.ndim - image.ndim
    if world not in viewer.dims.displayed:
        return False
    order = [axis for axis in viewer.dims.order if axis != world]
    viewer.dims.order = (world, *order)
    return True
