"""COCO instances JSON: image, category and RLE-mask annotation entries, written streamed and
atomically; plus COCO RLE helpers and the JSON records of tracked instances.

`sam3 segment` and dataset jobs write their `annotations.json` through `write_coco_file`
(see `sam3_core.jobs.writers.write_coco`), so there is one COCO layout.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO

import numpy as np

from sam3_core.postprocess import mask_to_rle
from sam3_core.results import Instances


def coco_categories(names: Sequence[str]) -> list[dict]:
    """One category per concept name, ids from 1 in order."""
    return [{"id": i + 1, "name": n} for i, n in enumerate(names)]


def coco_image(image_id: int, file_name: str, height: int, width: int) -> dict:
    """A COCO image entry."""
    return {"id": image_id, "file_name": file_name, "height": int(height), "width": int(width)}


def rle_area(rle: dict) -> int:
    """Pixel count of a COCO compressed RLE {size: [H, W], counts: str}."""
    from pycocotools import mask as mask_utils

    return int(mask_utils.area({"size": list(rle["size"]), "counts": rle["counts"].encode()}))


def coco_annotation(
    ann_id: int,
    image_id: int,
    category_id: int,
    rle: dict,
    box: Sequence[float],
    score: float,
    area: int | None = None,
) -> dict:
    """A COCO annotation: compressed RLE mask, `bbox` [x, y, w, h] from the xyxy pixel `box`,
    `score` kept; `area` counted from the RLE unless given."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": rle,
        "area": int(rle_area(rle) if area is None else area),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "score": float(score),
        "iscrowd": 0,
    }


def write_json_array(fh: IO[str], items: Iterable) -> None:
    """Write `[item, item, ...]` one item at a time."""
    fh.write("[")
    for n, item in enumerate(items):
        fh.write(("," if n else "") + "\n" + json.dumps(item))
    fh.write("\n]")


def write_atomic(path: str | os.PathLike, write) -> Path:
    """Call `write(fh)` on a temporary file beside `path`, then rename it over `path`: a reader
    (or a crash mid-write) never sees a partial file, and no temporary file is left behind."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_coco_file(
    path: str | os.PathLike,
    images: Iterable[dict],
    annotations: Iterable[dict],
    categories: list[dict],
) -> Path:
    """Stream a COCO instances JSON to `path` (atomically): every image entry, then every
    annotation (iterated after the images, so it may use ids the images assigned)."""

    def write(fh: IO[str]) -> None:
        fh.write('{"images": ')
        write_json_array(fh, images)
        fh.write(', "annotations": ')
        write_json_array(fh, annotations)
        fh.write(', "categories": ' + json.dumps(categories) + "}\n")

    return write_atomic(path, write)


def rle_counts(counts: str) -> np.ndarray:
    """The run lengths of a COCO compressed RLE string (pycocotools' LEB128-like code)."""
    values: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            c = ord(counts[pos]) - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(values) > 2:
            value += values[-2]
        values.append(value)
    return np.array(values, np.int64)


def rle_crop(rle: dict, box: Sequence[int]) -> np.ndarray:
    """bool [y1 - y0, x1 - x0]: the part of a COCO RLE mask inside the integer pixel box
    (x0, y0, x1, y1), without decoding the whole H x W mask (memory: H x box width)."""
    height, _ = rle["size"]
    x0, y0, x1, y1 = (int(v) for v in box)
    ends = np.cumsum(rle_counts(rle["counts"]))
    starts = ends - np.diff(ends, prepend=0)
    first, last = x0 * height, x1 * height  # the box's columns, column-major
    ones = slice(1, None, 2)  # runs alternate 0s, 1s, 0s, ...
    run_start = np.clip(starts[ones], first, last) - first
    run_end = np.clip(ends[ones], first, last) - first
    edges = np.zeros(last - first + 1, np.int32)
    np.add.at(edges, run_start, 1)
    np.add.at(edges, run_end, -1)
    columns = np.cumsum(edges[:-1]).astype(bool).reshape(x1 - x0, height)
    return np.ascontiguousarray(columns.T[y0:y1])


def rle_box(rle: dict) -> np.ndarray:
    """int64 [4] tight xyxy box (exclusive ends) of a COCO RLE mask; zeros when empty."""
    from pycocotools import mask as mask_utils

    x, y, w, h = mask_utils.toBbox({"size": list(rle["size"]), "counts": rle["counts"].encode()})
    return np.array([x, y, x + w, y + h], np.int64)


def instance_records(inst: Instances) -> list[dict]:
    """Tracked instances -> JSON-ready dicts: track_id, label, score, box (xyxy px), RLE mask."""
    names = inst.names()
    return [
        {
            "track_id": int(inst.track_ids[i]),
            "label": names[i],
            "score": float(inst.scores[i]),
            "box": [float(v) for v in inst.boxes[i]],
            "segmentation": mask_to_rle(inst.masks[i]),
        }
        for i in range(len(inst))
    ]
