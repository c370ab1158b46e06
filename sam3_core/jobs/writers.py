"""A job's Parquet shards -> COCO `annotations.json` and a Label Studio import file, streamed.

Both read records one at a time in id order (`iter_records`), so the files are the same
whatever the shard layout (a resumed job writes the same bytes as an uninterrupted one).
Error records are left out of both; `run_job`'s summary lists them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

from sam3_core.formats.coco import (
    coco_annotation,
    coco_categories,
    coco_image,
    write_atomic,
    write_coco_file,
    write_json_array,
)
from sam3_core.jobs.records import iter_records
from sam3_core.jobs.spec import concept_names, read_job

SIZE_COLUMNS = ("id", "width", "height", "error")


def job_names(out_dir: str | os.PathLike) -> list[str]:
    """The category names of the job that wrote `out_dir`, in prompt order (then those of its
    per-image prompts)."""
    signature = read_job(out_dir)["signature"]
    if "image_prompts" in signature:
        return list(signature["image_prompts"]["names"])
    return concept_names(signature["concepts"], signature["exemplars"])


def write_coco(out_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> Path:
    """COCO instances JSON (masks as compressed RLE, bbox from the predicted box, score kept);
    image `file_name` is the record id. Default path: `out_dir/annotations.json`."""
    out_dir = Path(out_dir)
    target = Path(path) if path is not None else out_dir / "annotations.json"
    names = job_names(out_dir)
    category = {n: i + 1 for i, n in enumerate(names)}
    images: dict[str, int] = {}

    def image_rows() -> Iterator[dict]:
        for rec in iter_records(out_dir, SIZE_COLUMNS):
            if rec["error"] is None:
                images[rec["id"]] = len(images) + 1
                yield coco_image(images[rec["id"]], rec["id"], rec["height"], rec["width"])

    def annotation_rows() -> Iterator[dict]:
        n = 0
        for rec in iter_records(out_dir):
            for inst in rec["instances"]:
                n += 1
                yield coco_annotation(
                    n,
                    images[rec["id"]],
                    category[inst["concept"]],
                    inst["segmentation"],
                    inst["box"],
                    inst["score"],
                )

    return write_coco_file(target, image_rows(), annotation_rows(), coco_categories(names))


def labeling_config(names: list[str], kind: str = "brush") -> str:
    """A Label Studio labeling config matching `write_labelstudio`'s results."""
    tag = "BrushLabels" if kind == "brush" else "RectangleLabels"
    labels = "".join(f"<Label value={quoteattr(n)}/>" for n in names)
    return (
        f'<View><Image name="image" value="$image"/>'
        f'<{tag} name="label" toName="image">{labels}</{tag}></View>'
    )


def write_labelstudio(
    out_dir: str | os.PathLike,
    path: str | os.PathLike | None = None,
    *,
    kind: str = "brush",
    url_for: Callable[[str], str] | None = None,
    model_version: str = "sam3",
) -> Path:
    """A Label Studio import file: one task per image with one prediction of all instances.

    kind: "brush" (brushlabels, masks as Label Studio RLE) or
    "rectangle" (rectanglelabels from the boxes; no extra package). url_for maps a record id
    to the task's image URL (default: the id itself; for local files served by Label Studio,
    e.g. `lambda p: "/data/local-files/?d=" + relative_path(p)`). The prediction's score is
    the mean instance score. Results fit `labeling_config(names, kind)`.
    Default path: `out_dir/labelstudio.json`.
    """
    if kind not in ("brush", "rectangle"):
        raise ValueError(f"kind must be 'brush' or 'rectangle'; got {kind!r}")
    brush = kind == "brush"
    out_dir = Path(out_dir)
    target = Path(path) if path is not None else out_dir / "labelstudio.json"
    url_for = url_for or str

    def tasks() -> Iterator[dict]:
        for rec in iter_records(out_dir):
            if rec["error"] is not None:
                continue
            results = [
                labelstudio_region(n, rec, inst, brush) for n, inst in enumerate(rec["instances"])
            ]
            scores = [inst["score"] for inst in rec["instances"]]
            prediction = {
                "model_version": model_version,
                "score": sum(scores) / len(scores) if scores else 0.0,
                "result": results,
            }
            yield {"data": {"image": url_for(rec["id"])}, "predictions": [prediction]}

    return write_atomic(target, lambda fh: write_json_array(fh, tasks()))


def labelstudio_region(n: int, rec: dict, inst: dict, brush: bool) -> dict:
    """One instance -> a Label Studio result (brushlabels RLE, or rectanglelabels in percent)."""
    from sam3_core.formats.labelstudio_rle import mask2rle
    from sam3_core.postprocess import rle_to_mask

    width, height = rec["width"], rec["height"]
    region = {
        "id": f"r{n}",
        "from_name": "label",
        "to_name": "image",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "score": inst["score"],
    }
    if brush:
        mask = rle_to_mask(inst["segmentation"])
        rle = mask2rle(mask.astype("uint8") * 255)
        value = {"format": "rle", "rle": rle, "brushlabels": [inst["concept"]]}
        return {**region, "type": "brushlabels", "value": value}
    x0, y0, x1, y1 = inst["box"]
    value = {
        "x": 100.0 * x0 / width,
        "y": 100.0 * y0 / height,
        "width": 100.0 * (x1 - x0) / width,
        "height": 100.0 * (y1 - y0) / height,
        "rotation": 0,
        "rectanglelabels": [inst["concept"]],
    }
    return {**region, "type": "rectanglelabels", "value": value}
