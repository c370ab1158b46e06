"""napari layer plumbing: prompt layers in, our Labels layers out (found by metadata, not name)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sam3_napari.convert import (
    clicks_from_points,
    exemplars_from_shapes,
    prompt_signs,
    spatial_shape,
    to_layer_coords,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Points, Shapes

    from sam3_core.results import Exemplar

OWNER = "sam3_napari"  # key of our tag in layer.metadata
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


def find_output(viewer: napari.viewer.Viewer, source: Image, kind: str, prompt: str):
    """Our Labels layer for (image, kind, prompt), if one exists."""
    for layer in viewer.layers:
        tag = tag_of(layer)
        if tag and (tag.get("source"), tag.get("kind"), tag.get("prompt")) == (
            source.unique_id,
            kind,
            prompt,
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
    """Our Labels layer for this image and prompt: reused when it exists, else created."""
    layer = find_output(viewer, source, kind, prompt)
    if layer is not None:
        return layer
    shape = spatial_shape(source.data.shape, source.rgb, channel_axis)
    keep = [
        i for i in range(source.ndim) if channel_axis is None or i != channel_axis % source.ndim
    ]
    tag = {"source": source.unique_id, "kind": kind, "prompt": prompt, "next_id": 1}
    return viewer.add_labels(
        np.zeros(shape, np.uint32),
        name=name,
        scale=np.asarray(source.scale)[keep],
        translate=np.asarray(source.translate)[keep],
        metadata={OWNER: tag},
        opacity=0.6,
    )


def write_plane(layer: Labels, index: tuple, plane: np.ndarray) -> None:
    """Replace one plane of our Labels layer and refresh the view."""
    layer.data[index] = plane
    layer.refresh()


def write_object(layer: Labels, index: tuple, mask: np.ndarray, obj_id: int) -> None:
    """Put one object (bool [H, W]) on a plane under `obj_id`, replacing its earlier mask."""
    plane = np.asarray(layer.data[index])
    plane[plane == obj_id] = 0
    plane[mask] = obj_id
    write_plane(layer, index, plane)
