"""The predictor worker both runners use: paths in, decoded here, records out.

Small images go through `predict_batch` together; images over the job's tile limit (or too
large to read at once) go one by one through `segment_tiled`, read lazily where the format
allows. Per-concept thresholds (`JobSpec.thresholds`) are applied to both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from sam3_core.formats.images import (
    ImageReadError,
    ImageTooLargeError,
    load_image,
    read_image_size,
)
from sam3_core.jobs.inputs import local_copy
from sam3_core.jobs.records import records_table
from sam3_core.jobs.spec import JobSpec
from sam3_core.postprocess import mask_to_rle
from sam3_core.prompts import PromptError
from sam3_core.results import Instances

# What makes one tiled image an error record; anything else (a model bug, out of memory) stops
# the job, as it does for the batched images.
TILED_ERRORS = (ImageReadError, PromptError, ValueError, OSError)


def load_predictor(spec, threads: int | None = None, store=None):
    """The `ImagePredictor` of a job's model settings, loaded once per worker.

    threads: torch's CPU threads for this process (Ray actors: one share of the machine);
    store: an `EmbeddingStore` the predictor reads and fills (None: no store).
    """
    import torch

    from sam3_core.build import load_model
    from sam3_core.predictor import ImagePredictor

    if threads is not None:
        torch.set_num_threads(threads)
    model = load_model(spec.checkpoint, config=spec.config, token=spec.token)
    if store is None:
        return ImagePredictor(model, spec.device, spec.precision)
    return ImagePredictor(model, spec.device, spec.precision, store=store)


class Worker:
    """Loads the model once; `process(paths)` decodes and segments one batch into records."""

    def __init__(self, spec: JobSpec, threads: int | None = None) -> None:
        self.spec = spec
        store = None
        if spec.store is not None:
            from sam3_core.store import EmbeddingStore

            store = EmbeddingStore(spec.store, memory_bytes=0)  # each image is seen once
        self.predictor = load_predictor(spec, threads, store=store)

    def process(self, paths: Sequence[str]) -> pa.Table:
        """Image ids -> one record each (unreadable ones carry `error`), sorted by id."""
        records, images = [], []
        for path in paths:
            try:
                with local_copy(path) as local:
                    image = read_whole(local, self.spec)
                    if image is None:
                        records.append(self.tiled_record(path, local))
                        continue
            except Exception as err:  # noqa: BLE001 - any bad input becomes an error record
                records.append(error_record(path, f"{type(err).__name__}: {err}"))
                continue
            images.append((path, image))
        for (path, image), result in zip(images, self.segment([im for _, im in images])):
            records.append(to_record(path, result))
        return records_table(records)

    def predict_kwargs(self) -> dict:
        """Thresholds and batch size for the predictor (the lowest per-concept threshold)."""
        return {
            "batch_size": self.spec.batch_size,
            "score_threshold": self.spec.lowest_threshold(),
            "mask_threshold": self.spec.mask_threshold,
        }

    def segment(self, images: list[np.ndarray]) -> list[Instances | dict]:
        """One `predict_batch` call; on a prompt that fails for some image, image by image."""
        spec, kwargs = self.spec, self.predict_kwargs()
        concepts, exemplars = list(spec.concepts) or None, list(spec.exemplars) or None
        try:
            found = self.predictor.predict_batch(images, concepts, exemplars, **kwargs)
            return [self.keep(inst) for inst in found]
        except PromptError:
            if len(images) == 1:
                raise
        results: list[Instances | dict] = []
        for image in images:
            try:
                found = self.predictor.predict_batch([image], concepts, exemplars, **kwargs)
                results.append(self.keep(found[0]))
            except PromptError as err:
                results.append({"height": image.shape[0], "width": image.shape[1], "error": err})
        return results

    def tiled_record(self, image_id: str, local: Path) -> dict:
        """One large image through `segment_tiled` -> its record (an error record on a bad
        file or prompt)."""
        from sam3_core.formats.images import open_array
        from sam3_core.large import tiling

        spec, kwargs = self.spec, self.predict_kwargs()
        try:
            reader = tiling.TileReader(open_array(local))
            tiled = tiling.segment_tiled(
                self.predictor,
                reader,
                list(spec.concepts) or None,
                list(spec.exemplars) or None,
                tile_size=spec.tile_size(),
                overlap=spec.tile_overlap,
                **kwargs,
            )
        except TILED_ERRORS as err:
            return error_record(image_id, f"{type(err).__name__}: {err}")
        tiled = self.keep(tiled)
        height, width = tiled.image_size
        instances = [
            instance(name, tiled.scores[i], tiled.boxes[i], tiled.rle(i))
            for i, name in enumerate(tiled.names())
        ]
        return {
            "id": image_id,
            "width": width,
            "height": height,
            "instances": instances,
            "error": None,
        }

    def keep(self, found):
        """`Instances` or `TiledInstances` above their concept's threshold (all without
        per-concept thresholds: the predictor already applied `score_threshold`)."""
        if self.spec.thresholds is None:
            return found
        from sam3_core.metrics.thresholds import keep_mask

        return found[keep_mask(found.names(), found.scores, self.spec.thresholds)]


def read_whole(local: Path, spec: JobSpec) -> np.ndarray | None:
    """uint8 RGB [H, W, 3] of an image segmented whole, or None when it is to be tiled: a side
    over `spec.tile_above`, every image with `spec.tile`, or too large to read at once.
    Above `spec.max_pixels` (and not tiled) it is refused before decoding."""
    try:
        size = read_image_size(local)
    except ImageReadError:
        size = None  # not for the header reader: load_image decides or says why
    longest = max(size) if size else 0
    if spec.tile is not None or (spec.tile_above is not None and longest > spec.tile_above):
        return None
    try:
        return decode(local, spec.max_pixels, size)
    except ImageTooLargeError:
        return None


def decode(local: Path, max_pixels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read a local image file into uint8 RGB [H, W, 3]; ValueError above `max_pixels`, before
    decoding when its (H, W) `size` is known. ImageTooLargeError past what PIL reads at once."""
    if size is not None and size[0] * size[1] > max_pixels:
        raise ValueError(too_large(size[1], size[0], max_pixels))
    image = load_image(local)
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ValueError(too_large(image.shape[1], image.shape[0], max_pixels))
    return image


def too_large(width: int, height: int, max_pixels: int) -> str:
    """The message for an image above the job's pixel limit."""
    return (
        f"image of {width}x{height} pixels exceeds max_pixels={max_pixels}; raise max_pixels or "
        "tile it (tile_above / sam3 segment --tile-above)"
    )


def error_record(image_id: str, error: str, height: int | None = None, width: int | None = None):
    """A record for an image that could not be segmented."""
    return {"id": image_id, "width": width, "height": height, "instances": [], "error": error}


def instance(concept: str, score, box, rle: dict) -> dict:
    """One record instance: concept, score, xyxy pixel box, COCO RLE."""
    return {
        "concept": concept,
        "score": float(score),
        "box": [float(v) for v in box],
        "segmentation": rle,
    }


def to_record(image_id: str, result: Instances | dict) -> dict:
    """Instances of one image -> its record (masks as COCO RLE)."""
    if isinstance(result, dict):
        err = result["error"]
        return error_record(
            image_id, f"{type(err).__name__}: {err}", result["height"], result["width"]
        )
    height, width = result.image_size
    instances = [
        instance(name, result.scores[i], result.boxes[i], mask_to_rle(result.masks[i]))
        for i, name in enumerate(result.names())
    ]
    return {"id": image_id, "width": width, "height": height, "instances": instances, "error": None}
