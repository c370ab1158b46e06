"""Overlay PNGs of a job's records: each image with its instances drawn, named by its path.

Names: the image's path below the common folder of all the job's images, plus `.png`
(`a/x.png` -> `a/x.png.png`, `b/x.jpg` -> `b/x.jpg.png`: same-named images never collide);
a URI counts as the path `/<scheme>/<bucket>/<key>`. Characters that some file systems refuse
(`<>:"|?*`, control characters) become `_` and the name gets a short hash of the id, so two
ids never share a name. Images with a side over `OVERLAY_MAX_SIDE` are drawn on a thumbnail.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from sam3_core.jobs.inputs import is_uri, local_copy
from sam3_core.jobs.records import iter_records
from sam3_core.jobs.writers import job_names
from sam3_core.results import Instances

OVERLAYS_DIR = "overlays"
OVERLAY_MAX_SIDE = 2048  # px: larger images are drawn on a thumbnail with this longest side
UNSAFE = re.compile(r'[<>:"|?*\x00-\x1f]')


def id_path(image_id: str) -> str:
    """An image id as a normalised absolute POSIX path (a URI as /<scheme>/<rest>)."""
    if is_uri(image_id):
        scheme, rest = image_id.split("://", 1)
        return posixpath.normpath(f"/{scheme}/{rest}")
    return Path(os.path.abspath(image_id)).as_posix()


def overlay_root(ids: Iterable[str]) -> str:
    """The common folder of the ids' paths (overlay names are relative to it)."""
    parents = [posixpath.dirname(id_path(i)) for i in ids]
    return posixpath.commonpath(parents) if parents else "/"


def overlay_name(image_id: str, root: str) -> str:
    """The overlay's relative path for one image: its path below `root` + '.png', made safe."""
    rel = posixpath.relpath(id_path(image_id), root) + ".png"
    safe = UNSAFE.sub("_", rel)
    if safe != rel:
        digest = hashlib.sha1(image_id.encode()).hexdigest()[:8]
        safe = f"{safe[: -len('.png')]}-{digest}.png"
    return safe


def overlay_names(out_dir: str | os.PathLike) -> dict[str, str]:
    """id -> overlay path (relative to the overlays folder) for every record of a job."""
    ids = [r["id"] for r in iter_records(out_dir, ["id"])]
    root = overlay_root(ids)
    return {i: overlay_name(i, root) for i in ids}


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


def record_crops(record: dict, names: list[str]):
    """One job record -> `TiledInstances` (masks as crops: no full-size array), empty masks
    left out."""
    from sam3_core.formats.coco import rle_box, rle_crop
    from sam3_core.large.sparse import TiledInstances

    insts = [i for i in record["instances"] if i["segmentation"]["counts"]]
    boxes = [rle_box(i["segmentation"]) for i in insts]
    keep = [k for k, b in enumerate(boxes) if b[2] > b[0] and b[3] > b[1]]
    return TiledInstances(
        (record["height"], record["width"]),
        np.array([boxes[k] for k in keep], np.float32).reshape(-1, 4),
        [rle_crop(insts[k]["segmentation"], boxes[k]) for k in keep],
        np.array([insts[k]["score"] for k in keep], np.float32),
        np.array([names.index(insts[k]["concept"]) for k in keep], np.int64),
        names,
    )


def draw_record(record: dict, names: list[str], alpha: float):
    """The overlay of one record as a PIL image: the whole image, or a thumbnail of a large
    one (longest side at most `OVERLAY_MAX_SIDE`, or too large to read at once)."""
    from sam3_core.formats.images import ImageTooLargeError, load_image, open_array
    from sam3_core.formats.overlay import draw_overlay, draw_tiled_overlay
    from sam3_core.large.tiling import TileReader

    with local_copy(record["id"]) as local:
        if max(record["height"], record["width"]) <= OVERLAY_MAX_SIDE:
            try:
                return draw_overlay(load_image(local), record_instances(record, names), alpha)
            except ImageTooLargeError:
                pass  # over PIL's decompression-bomb limit: read it as a large image
        thumb, step = TileReader(open_array(local)).thumbnail(OVERLAY_MAX_SIDE)
    return draw_tiled_overlay(thumb, step, record_crops(record, names), alpha)


def write_overlays(
    out_dir: str | os.PathLike,
    folder: str | os.PathLike | None = None,
    *,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    alpha: float = 0.45,
    overwrite: bool = False,
) -> Path:
    """Draw each record's instances over its image into PNGs named as the module says; error
    records are left out. Default folder: `out_dir/overlays`.

    ids: only these images; limit: at most this many (in id order). An overlay already there
    is kept unless `overwrite` (records do not change once written, so a resumed job draws
    only its new images). Each PNG is written under a temporary name, then renamed. Images
    that cannot be read any more are left out with a warning naming them. Returns the folder.
    """
    out_dir = Path(out_dir)
    target = Path(folder) if folder is not None else out_dir / OVERLAYS_DIR
    target.mkdir(parents=True, exist_ok=True)
    names = job_names(out_dir)
    paths = overlay_names(out_dir)
    wanted = set(ids) if ids is not None else None
    count, unreadable = 0, []
    for record in iter_records(out_dir):
        if limit is not None and count >= limit:
            break
        if record["error"] is not None or (wanted is not None and record["id"] not in wanted):
            continue
        path = target / paths[record["id"]]
        count += 1
        if path.exists() and not overwrite:
            continue
        try:
            canvas = draw_record(record, names, alpha)
        except Exception as err:  # noqa: BLE001 - moved or changed since the job: say which
            unreadable.append(f"{record['id']} ({type(err).__name__}: {err})")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        canvas.save(tmp, format="PNG")
        os.replace(tmp, path)
    if unreadable:
        shown = "; ".join(unreadable[:5]) + (" ..." if len(unreadable) > 5 else "")
        warnings.warn(
            f"{len(unreadable)} image(s) could not be read for overlays (moved or changed since "
            f"the job?): {shown}",
            stacklevel=2,
        )
    return target
