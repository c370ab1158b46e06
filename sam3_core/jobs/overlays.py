"""Overlay PNGs of a job's records: each image with its instances drawn, named by its id."""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from sam3_core.jobs.records import iter_records
from sam3_core.jobs.spec import read_job
from sam3_core.jobs.worker import decode
from sam3_core.jobs.writers import job_names
from sam3_core.results import Instances

OVERLAYS_DIR = "overlays"
UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def overlay_name(image_id: str) -> str:
    """A file name for one image's overlay: its stem made path-safe plus a hash of the whole
    id, so that `a/x.png` and `b/x.png` (or two URIs) never share a name."""
    stem = UNSAFE.sub("_", PurePosixPath(image_id).stem).strip("._")[:80] or "image"
    return f"{stem}-{hashlib.sha1(image_id.encode()).hexdigest()[:12]}.png"


def record_instances(record: dict, names: list[str]) -> Instances:
    """One job record -> `Instances` (masks bool [N, H, W] decoded from the RLE)."""
    from sam3_core.postprocess import rle_to_mask

    insts = record["instances"]
    h, w = record["height"], record["width"]
    masks = [rle_to_mask(i["segmentation"]) for i in insts]
    return Instances(
        np.stack(masks) if masks else np.zeros((0, h, w), bool),
        np.array([i["box"] for i in insts], np.float32).reshape(-1, 4),
        np.array([i["score"] for i in insts], np.float32),
        np.array([names.index(i["concept"]) for i in insts], np.int64),
        names,
        np.zeros((len(insts), 1, 1), np.float32),
    )


def write_overlays(
    out_dir: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    *,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    alpha: float = 0.45,
) -> Path:
    """Draw each record's instances over its image (`draw_overlay`) into PNGs named by
    `overlay_name(id)`; error records are left out. Default folder: `out_dir/overlays`.

    ids: only these images; limit: at most this many (in id order). Each PNG is written under
    a temporary name, then renamed; re-running replaces them. Images that cannot be read any
    more are left out with a warning naming them. Returns the folder.
    """
    from sam3_core.formats.overlay import draw_overlay

    out_dir = Path(out_dir)
    target = Path(folder) if folder is not None else out_dir / OVERLAYS_DIR
    target.mkdir(parents=True, exist_ok=True)
    names = job_names(out_dir)
    max_pixels = read_job(out_dir)["signature"]["max_pixels"]
    wanted = set(ids) if ids is not None else None
    written, unreadable = 0, []
    for record in iter_records(out_dir):
        if limit is not None and written >= limit:
            break
        if record["error"] is not None or (wanted is not None and record["id"] not in wanted):
            continue
        try:
            image = decode(record["id"], max_pixels)
        except Exception as err:  # noqa: BLE001 - moved or changed since the job: say which
            unreadable.append(f"{record['id']} ({type(err).__name__}: {err})")
            continue
        canvas = draw_overlay(image, record_instances(record, names), alpha)
        path = target / overlay_name(record["id"])
        tmp = path.with_name(path.name + ".tmp")
        canvas.save(tmp, format="PNG")
        os.replace(tmp, path)
        written += 1
    if unreadable:
        shown = "; ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        warnings.warn(
            f"{len(unreadable)} image(s) could not be read for overlays (moved or changed since "
            f"the job?): {shown}",
            stacklevel=2,
        )
    return target
