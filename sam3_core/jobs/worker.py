"""The predictor worker both runners use: paths in, decoded here, records out.

Small images go through the backbone together, then each through its own prompt (the job's
concepts, or its per-image prompts); images over the job's tile limit (or too large to read at
once) go one by one through `segment_tiled`, read lazily where the format allows. Per-concept
thresholds (`JobSpec.thresholds`) are applied to both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from sam3_core.formats.images import (
    ImageReadError,
    ImageTooLargeError,
    load_image,
    read_image_size,
)
from sam3_core.jobs.image_prompts import Prompt, explained
from sam3_core.jobs.inputs import local_copy
from sam3_core.jobs.records import records_table
from sam3_core.jobs.spec import JobSpec
from sam3_core.postprocess import mask_to_rle
from sam3_core.prompts import PromptError
from sam3_core.results import Instances

if TYPE_CHECKING:
    from sam3_core.large.sparse import TiledInstances
    from sam3_core.predictor import ImageState

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
        for (path, _), result in zip(images, self.segment(images)):
            records.append(to_record(path, result))
        return records_table(records)

    def predict_kwargs(self) -> dict:
        """Thresholds for the predictor (the lowest per-concept threshold)."""
        return {
            "score_threshold": self.spec.lowest_threshold(),
            "mask_threshold": self.spec.mask_threshold,
        }

    def segment(self, images: list[tuple[str, np.ndarray]]) -> list[Instances | dict]:
        """(id, image) pairs -> Instances, or a dict (height, width, error) for an image
        without instances to look for (error None: its prompt set is empty). One backbone
        pass per `batch_size` images, then each image's own prompt (`JobSpec.prompt`); a
        prompt that fails for an image is that image's error."""
        results: list[Instances | dict] = []
        size = self.spec.batch_size
        for start in range(0, len(images), size):
            chunk = images[start : start + size]
            prompts = [self.spec.prompt(image_id, im.shape[:2]) for image_id, im in chunk]
            todo = [im for (_, im), p in zip(chunk, prompts) if has_prompt(p)]
            states = iter(self.predictor.set_images(todo) if todo else [])
            for (_, image), prompt in zip(chunk, prompts):
                h, w = image.shape[:2]
                if not has_prompt(prompt):
                    results.append({"height": h, "width": w, "error": no_prompt_error(prompt)})
                    continue
                try:
                    results.append(self.answer(next(states), prompt))
                except PromptError as err:
                    results.append({"height": h, "width": w, "error": f"PromptError: {err}"})
        return results

    def answer(self, state: ImageState, prompt: Prompt) -> Instances:
        """One encoded image's instances of its prompt, named and kept by threshold; a
        PromptError for boxes the image refuses."""
        try:
            found = self.predictor.predict(
                state, prompt.concepts, prompt.exemplars, **self.predict_kwargs()
            )
        except PromptError as err:
            raise explained(err, prompt) from None
        return self.keep(renamed(found, prompt.names))

    def tiled_record(self, image_id: str, local: Path) -> dict:
        """One large image through `segment_tiled` -> its record (an error record on a bad
        file or prompt)."""
        from sam3_core.formats.images import open_array
        from sam3_core.large import tiling

        spec = self.spec
        prompt = None
        try:
            reader = tiling.TileReader(open_array(local))
            prompt = spec.prompt(image_id, reader.size)
            if not has_prompt(prompt):
                height, width = reader.size
                return error_record(image_id, no_prompt_error(prompt), height, width)
            tiled = tiling.segment_tiled(
                self.predictor,
                reader,
                prompt.concepts,
                prompt.exemplars,
                tile_size=spec.tile_size(),
                overlap=spec.tile_overlap,
                batch_size=spec.batch_size,
                **self.predict_kwargs(),
            )
        except TILED_ERRORS as err:
            if isinstance(err, PromptError):
                err = explained(err, prompt)
            return error_record(image_id, f"{type(err).__name__}: {err}")
        tiled = self.keep(renamed(tiled, prompt.names))
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


def has_prompt(prompt: Prompt | None) -> bool:
    """Whether an image has something to look for (not None, not an empty prompt set)."""
    return prompt is not None and bool(prompt.concepts or prompt.exemplars)


def no_prompt_error(prompt: Prompt | None) -> str | None:
    """The error of an image without a prompt (None for an empty prompt set: no error)."""
    if prompt is not None:
        return None
    return (
        "JobSpecError: no prompt for this image: add it to image_prompts, or give the job "
        "concepts or exemplars for the images not listed there"
    )


def renamed(
    found: Instances | TiledInstances, names: Sequence[str] | None
) -> Instances | TiledInstances:
    """`Instances` / `TiledInstances` with their concepts named `names` (None: as they are)."""
    return found if names is None else dataclasses.replace(found, label_names=list(names))


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
    """A record without instances: `error` says why the image could not be segmented (None:
    it had nothing to look for)."""
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
    """Instances of one image -> its record (masks as COCO RLE); a dict (height, width,
    error) -> a record without instances (an error record when `error` is set)."""
    if isinstance(result, dict):
        return error_record(image_id, result["error"], result["height"], result["width"])
    height, width = result.image_size
    instances = [
        instance(name, result.scores[i], result.boxes[i], mask_to_rle(result.masks[i]))
        for i, name in enumerate(result.names())
    ]
    return {"id": image_id, "width": width, "height": height, "instances": instances, "error": None}
