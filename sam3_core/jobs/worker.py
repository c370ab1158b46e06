"""The predictor worker both runners use: paths in, decoded here, records out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from PIL import Image

from sam3_core.formats.images import load_image
from sam3_core.jobs.inputs import local_copy
from sam3_core.jobs.records import records_table
from sam3_core.jobs.spec import JobSpec
from sam3_core.postprocess import mask_to_rle
from sam3_core.prompts import PromptError
from sam3_core.results import Instances


class Worker:
    """Loads the model once; `process(paths)` decodes and segments one batch into records.

    Also a Ray Data callable class: `__call__` takes an Arrow batch whose `paths` column holds
    one list of image ids per row (one planned batch) and returns their records as a table.
    """

    def __init__(self, spec: JobSpec, threads: int | None = None) -> None:
        import torch

        from sam3_core.build import load_model
        from sam3_core.predictor import ImagePredictor

        if threads is not None:
            torch.set_num_threads(threads)
        self.spec = spec
        model = load_model(spec.checkpoint, config=spec.config, token=spec.token)
        self.predictor = ImagePredictor(model, spec.device, spec.precision)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Ray Data entry: rows of `paths` lists -> the records of all of them."""
        tables = [self.process(paths) for paths in batch["paths"].to_pylist()]
        return pa.concat_tables(tables) if tables else records_table([])

    def process(self, paths: Sequence[str]) -> pa.Table:
        """Image ids -> one record each (unreadable ones carry `error`), sorted by id."""
        records, images = [], []
        for path in paths:
            try:
                image = decode(path, self.spec.max_pixels)
            except Exception as err:  # noqa: BLE001 - any bad input becomes an error record
                records.append(error_record(path, f"{type(err).__name__}: {err}"))
                continue
            images.append((path, image))
        for (path, image), result in zip(images, self.segment([im for _, im in images])):
            records.append(to_record(path, result))
        return records_table(records)

    def segment(self, images: list[np.ndarray]) -> list[Instances | dict]:
        """One `predict_batch` call; on a prompt that fails for some image, image by image."""
        spec = self.spec
        kwargs = {
            "batch_size": spec.batch_size,
            "score_threshold": spec.score_threshold,
            "mask_threshold": spec.mask_threshold,
        }
        concepts, exemplars = list(spec.concepts) or None, list(spec.exemplars) or None
        try:
            return self.predictor.predict_batch(images, concepts, exemplars, **kwargs)
        except PromptError:
            if len(images) == 1:
                raise
        results: list[Instances | dict] = []
        for image in images:
            try:
                results.extend(self.predictor.predict_batch([image], concepts, exemplars, **kwargs))
            except PromptError as err:
                results.append({"height": image.shape[0], "width": image.shape[1], "error": err})
        return results


def decode(path: str, max_pixels: int) -> np.ndarray:
    """Read one image id into uint8 RGB [H, W, 3]; refuse it above `max_pixels` before decoding."""
    with local_copy(path) as local:
        try:
            with Image.open(local) as probe:
                width, height = probe.size
        except Exception:  # noqa: BLE001 - not for PIL: load_image decides (TIFF) or says why
            width = height = 0
        if width * height > max_pixels:
            raise ValueError(too_large(width, height, max_pixels))
        image = load_image(local)
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ValueError(too_large(image.shape[1], image.shape[0], max_pixels))
    return image


def too_large(width: int, height: int, max_pixels: int) -> str:
    """The message for an image above the job's pixel limit."""
    return (
        f"image of {width}x{height} pixels exceeds max_pixels={max_pixels}; raise max_pixels or "
        "segment it in tiles (sam3_core.segment_tiled)"
    )


def error_record(image_id: str, error: str, height: int | None = None, width: int | None = None):
    """A record for an image that could not be segmented."""
    return {"id": image_id, "width": width, "height": height, "instances": [], "error": error}


def to_record(image_id: str, result: Instances | dict) -> dict:
    """Instances of one image -> its record (masks as COCO RLE)."""
    if isinstance(result, dict):
        err = result["error"]
        return error_record(
            image_id, f"{type(err).__name__}: {err}", result["height"], result["width"]
        )
    height, width = result.image_size
    names = result.names()
    instances = [
        {
            "concept": names[i],
            "score": float(result.scores[i]),
            "box": [float(v) for v in result.boxes[i]],
            "segmentation": mask_to_rle(result.masks[i]),
        }
        for i in range(len(result))
    ]
    return {"id": image_id, "width": width, "height": height, "instances": instances, "error": None}
