"""Instances of a large image stored sparsely: a box and a cropped bool mask per instance.

Memory grows with the objects' areas, never with N x H x W: a 20000 x 20000 slide with
10,000 cells of 50 x 50 pixels holds about 25 MB of masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sam3_core.results import Instances

# `to_instances` refuses to build dense masks above this many bytes (N x H x W booleans).
DENSE_LIMIT_BYTES = 2 << 30


def tight_crop(mask: np.ndarray, x0: int = 0, y0: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """bool [h, w] placed at (x0, y0) -> (int64 box [4] xyxy global, bool crop), None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = np.array([x0 + c0, y0 + r0, x0 + c1, y0 + r1], np.int64)
    return box, np.ascontiguousarray(mask[r0:r1, c0:c1])


def paste(box: np.ndarray, crop: np.ndarray, region: np.ndarray) -> np.ndarray:
    """The crop at `box` (xyxy) seen through `region` (xyxy): bool [h_region, w_region]."""
    rx0, ry0, rx1, ry1 = (int(v) for v in region)
    out = np.zeros((ry1 - ry0, rx1 - rx0), bool)
    x0, y0 = max(int(box[0]), rx0), max(int(box[1]), ry0)
    x1, y1 = min(int(box[2]), rx1), min(int(box[3]), ry1)
    if x1 > x0 and y1 > y0:
        out[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0] = crop[
            y0 - box[1] : y1 - box[1], x0 - box[0] : x1 - box[0]
        ]
    return out


def union_crops(boxes: list[np.ndarray], crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel union of several cropped masks -> (box, crop) tight around the union."""
    region = np.array(
        [
            min(b[0] for b in boxes),
            min(b[1] for b in boxes),
            max(b[2] for b in boxes),
            max(b[3] for b in boxes),
        ],
        np.int64,
    )
    acc = np.zeros((region[3] - region[1], region[2] - region[0]), bool)
    for b, c in zip(boxes, crops):
        acc |= paste(b, c, region)
    result = tight_crop(acc, int(region[0]), int(region[1]))
    if result is None:
        raise ValueError("union_crops got only empty masks; pass at least one non-empty crop")
    return result


def crop_to_rle(box: np.ndarray, crop: np.ndarray, size: tuple[int, int]) -> dict:
    """A cropped mask -> COCO compressed RLE of the full H x W image, without a full array."""
    from pycocotools import mask as mask_utils

    h, w = size
    x0, y0 = int(box[0]), int(box[1])
    padded = np.zeros((crop.shape[0] + 2, crop.shape[1]), np.int8)
    padded[1:-1] = crop
    diff = np.diff(padded, axis=0)  # column-major runs: +1 starts, -1 ends, per column
    sc, sr = np.nonzero(diff.T == 1)
    ec, er = np.nonzero(diff.T == -1)
    starts = (x0 + sc) * h + y0 + sr
    ends = (x0 + ec) * h + y0 + er
    # Runs that meet across a column break (bottom of one column, top of the next) join.
    joined = np.ones(len(starts), bool)
    joined[1:] = starts[1:] != ends[:-1]
    starts = starts[joined]
    ends = ends[np.append(joined[1:], True)]
    edges = np.empty(2 * len(starts) + 2, np.int64)
    edges[0], edges[-1] = 0, h * w
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    counts = np.diff(edges).tolist()
    if len(counts) > 1 and counts[-1] == 0:
        counts.pop()  # a mask reaching the last pixel ends on a run of ones
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


@dataclass
class TiledInstances:
    """Instances of an H x W image (N of them), masks kept as crops in global pixels.

    boxes: float32 [N, 4] xyxy, the tight box of each mask (crop i covers boxes[i]);
    crops: N bool arrays [y1 - y0, x1 - x0]; scores: float32 [N], sorted descending;
    labels: int64 [N] index into `label_names`; cut: bool [N], True when the mask was only
    seen cut by an inner tile border (a fragment the merge could not complete).
    """

    image_size: tuple[int, int]
    boxes: np.ndarray
    crops: list[np.ndarray]
    scores: np.ndarray
    labels: np.ndarray
    label_names: list[str]
    cut: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.scores)

    def names(self) -> list[str]:
        """The label name of each instance."""
        return [self.label_names[i] for i in self.labels]

    def areas(self) -> np.ndarray:
        """int64 [N] pixel count of each mask."""
        return np.array([int(c.sum()) for c in self.crops], np.int64)

    def mask(self, index: int) -> np.ndarray:
        """bool [H, W] mask of one instance (allocates the full image: small images only)."""
        h, w = self.image_size
        return paste(self.boxes[index].astype(np.int64), self.crops[index], np.array([0, 0, w, h]))

    def rle(self, index: int) -> dict:
        """COCO compressed RLE of one instance in global coordinates (no full-size array)."""
        return crop_to_rle(self.boxes[index].astype(np.int64), self.crops[index], self.image_size)

    def to_rles(self) -> list[dict]:
        """COCO RLEs of every instance, in order."""
        return [self.rle(i) for i in range(len(self))]

    def to_label_image(self, dtype=np.uint32, out=None) -> np.ndarray:
        """[H, W] label image: 0 background, instance i -> i + 1; higher scores win overlaps.

        Allocates H x W x itemsize bytes (1.6 GB for 20000^2 uint32) unless `out` is given: any
        array-like of shape [H, W] supporting slice assignment (numpy memmap, zarr), zeroed.
        """
        dtype = np.dtype(dtype)
        if len(self) >= np.iinfo(dtype).max:
            raise ValueError(
                f"{len(self)} instances do not fit in {dtype.name} labels; pass dtype=np.uint32"
            )
        if out is None:
            out = np.zeros(self.image_size, dtype)
        elif tuple(out.shape) != tuple(self.image_size):
            raise ValueError(f"out has shape {out.shape}; give an array of shape {self.image_size}")
        for i in reversed(range(len(self))):  # lowest score first, the best painted last
            x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
            tile = np.asarray(out[y0:y1, x0:x1])
            out[y0:y1, x0:x1] = np.where(self.crops[i], dtype.type(i + 1), tile)
        return out

    def to_instances(self) -> Instances:
        """Dense `Instances` (bool [N, H, W] masks): for images small enough to hold them."""
        h, w = self.image_size
        if len(self) * h * w > DENSE_LIMIT_BYTES:
            raise MemoryError(
                f"{len(self)} dense masks of {w}x{h} need {len(self) * h * w / 2**30:.1f} GiB; "
                "use crops, rle(i) or to_label_image() instead"
            )
        masks = np.zeros((len(self), h, w), bool)
        for i in range(len(self)):
            x0, y0, x1, y1 = (int(v) for v in self.boxes[i])
            masks[i, y0:y1, x0:x1] = self.crops[i]
        return Instances(
            masks=masks,
            boxes=self.boxes.astype(np.float32),
            scores=self.scores.astype(np.float32),
            labels=self.labels.astype(np.int64),
            label_names=list(self.label_names),
            low_res_logits=np.zeros((len(self), 0, 0), np.float32),
        )

    def __getitem__(self, index) -> TiledInstances:
        """Select instances by an index array, a slice or a bool mask."""
        idx = np.atleast_1d(np.arange(len(self))[index])
        return TiledInstances(
            self.image_size,
            self.boxes[idx],
            [self.crops[i] for i in idx],
            self.scores[idx],
            self.labels[idx],
            self.label_names,
            self.cut[idx] if len(self.cut) else self.cut,
        )
