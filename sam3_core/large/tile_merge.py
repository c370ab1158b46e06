"""Merge instances found in overlapping tiles into one set: whole objects, no duplicates.

Rules, in order:
1. A piece is *cut* when its mask touches a tile border that is not an image border.
2. Pieces of neighbouring tiles (same label) are matched one-to-one, greedily by agreement:
   mask IoU inside the tiles' shared region when tiles overlap, or, for tiles that only touch
   (overlap 0), IoU of the two masks' profiles along the seam. Matches at `merge_iou` or above
   join one group (transitively, so an object spanning many tiles becomes one group).
3. A group with an uncut member is that member (the best-scoring one): the object lies whole
   in that tile. A group of cut pieces only becomes the pixel union of its pieces.
4. NMS by mask IoU (same label, `nms_iou`); a still-cut result mostly (> 50%) inside a
   better-scoring one is dropped too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sam3_core.large.sparse import TiledInstances, paste, tight_crop, union_crops

NMS_CELL = 256  # px: grid cell of the spatial index used by NMS


@dataclass
class TilePiece:
    """One instance seen in one tile, in global pixels: box int64 [4] xyxy, crop bool [h, w]."""

    tile: int
    box: np.ndarray
    crop: np.ndarray
    score: float
    label: int


def tile_grid(size: tuple[int, int], tile_size: int, overlap: int) -> np.ndarray:
    """Tiles covering an H x W image: int64 [T, 4] xyxy, row-major; edge tiles end flush."""
    if tile_size <= 0 or not 0 <= overlap < tile_size:
        raise ValueError(
            f"tile_size={tile_size}, overlap={overlap}: give tile_size > 0 and "
            "0 <= overlap < tile_size"
        )
    h, w = size

    def starts(n: int) -> list[int]:
        if n <= tile_size:
            return [0]
        stride = tile_size - overlap
        out = list(range(0, n - tile_size, stride))
        return out + [n - tile_size]

    ys, xs = starts(h), starts(w)
    return np.array(
        [[x, y, min(x + tile_size, w), min(y + tile_size, h)] for y in ys for x in xs], np.int64
    )


def piece_from_mask(
    tile: int, rect: np.ndarray, mask: np.ndarray, score: float, label: int
) -> TilePiece | None:
    """A tile-local bool mask [h, w] -> a `TilePiece` in global pixels (None when empty)."""
    found = tight_crop(mask, int(rect[0]), int(rect[1]))
    if found is None:
        return None
    return TilePiece(tile, found[0], found[1], float(score), int(label))


def _is_cut(box: np.ndarray, rect: np.ndarray, size: tuple[int, int]) -> bool:
    h, w = size
    return bool(
        (box[0] <= rect[0] and rect[0] > 0)
        or (box[1] <= rect[1] and rect[1] > 0)
        or (box[2] >= rect[2] and rect[2] < w)
        or (box[3] >= rect[3] and rect[3] < h)
    )


def _boxes_meet(a: np.ndarray, b: np.ndarray, pad: int = 0) -> bool:
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def _seam_region(ra: np.ndarray, rb: np.ndarray) -> tuple[str, np.ndarray] | None:
    """How two tiles meet: ("overlap", shared xyxy), ("seam", 2-px band xyxy) or None."""
    x0, y0 = max(ra[0], rb[0]), max(ra[1], rb[1])
    x1, y1 = min(ra[2], rb[2]), min(ra[3], rb[3])
    if x1 > x0 and y1 > y0:
        return "overlap", np.array([x0, y0, x1, y1])
    if x1 == x0 and y1 > y0:
        return "seam", np.array([x0 - 1, y0, x0 + 1, y1])
    if y1 == y0 and x1 > x0:
        return "seam", np.array([x0, y0 - 1, x1, y0 + 1])
    return None


def _agreement(pa: TilePiece, pb: TilePiece, kind: str, region: np.ndarray) -> float:
    a, b = paste(pa.box, pa.crop, region), paste(pb.box, pb.crop, region)
    if kind == "overlap":
        return _iou(a, b)
    vertical = region[2] - region[0] == 2  # a band two columns wide: a vertical seam
    prof_a = (a if not vertical else a.T).any(axis=0)
    prof_b = (b if not vertical else b.T).any(axis=0)
    return _iou(prof_a, prof_b)


def _match_pairs(
    pieces: Sequence[TilePiece], tiles: np.ndarray, merge_iou: float
) -> list[tuple[int, int]]:
    by_tile: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(pieces):
        by_tile[p.tile].append(i)
    occupied = sorted(by_tile)
    pairs = []
    for ai, ta in enumerate(occupied):
        for tb in occupied[ai + 1 :]:
            met = _seam_region(tiles[ta], tiles[tb])
            if met is None:
                continue
            kind, region = met
            near_a = [i for i in by_tile[ta] if _boxes_meet(pieces[i].box, region)]
            near_b = [j for j in by_tile[tb] if _boxes_meet(pieces[j].box, region)]
            scored = []
            for i in near_a:
                for j in near_b:
                    pa, pb = pieces[i], pieces[j]
                    if pa.label != pb.label or not _boxes_meet(pa.box, pb.box, pad=1):
                        continue
                    agree = _agreement(pa, pb, kind, region)
                    if agree >= merge_iou:
                        scored.append((agree, i, j))
            used: set[int] = set()
            for _, i, j in sorted(scored, reverse=True):
                if i not in used and j not in used:
                    used.update((i, j))
                    pairs.append((i, j))
    return pairs


def _groups(n: int, pairs: list[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(i)] = find(j)
    out: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        out[find(i)].append(i)
    return list(out.values())


def _overlap_counts(a_box, a_crop, b_box, b_crop) -> int:
    region = np.array(
        [
            max(a_box[0], b_box[0]),
            max(a_box[1], b_box[1]),
            min(a_box[2], b_box[2]),
            min(a_box[3], b_box[3]),
        ]
    )
    if region[2] <= region[0] or region[3] <= region[1]:
        return 0
    return int(np.count_nonzero(paste(a_box, a_crop, region) & paste(b_box, b_crop, region)))


def _nms(boxes, crops, scores, labels, cut, nms_iou: float) -> list[int]:
    """Indices kept, best score first (see module rule 4)."""
    areas = [int(np.count_nonzero(c)) for c in crops]
    cells: dict[tuple[int, int], list[int]] = defaultdict(list)
    keep = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        b = boxes[i]
        span = [
            (cx, cy)
            for cy in range(b[1] // NMS_CELL, (b[3] - 1) // NMS_CELL + 1)
            for cx in range(b[0] // NMS_CELL, (b[2] - 1) // NMS_CELL + 1)
        ]
        seen = {k for cell in span for k in cells[cell]}
        suppressed = False
        for k in seen:
            if labels[k] != labels[i] or not _boxes_meet(boxes[k], b):
                continue
            inter = _overlap_counts(boxes[k], crops[k], b, crops[i])
            union = areas[i] + areas[k] - inter
            if (union and inter / union > nms_iou) or (cut[i] and inter > 0.5 * areas[i]):
                suppressed = True
                break
        if not suppressed:
            keep.append(int(i))
            for cell in span:
                cells[cell].append(int(i))
    return keep


def merge_tiles(
    pieces: Sequence[TilePiece],
    tiles: np.ndarray,
    image_size: tuple[int, int],
    label_names: Sequence[str],
    merge_iou: float = 0.5,
    nms_iou: float = 0.5,
) -> TiledInstances:
    """Per-tile pieces (global pixels) + tiles [T, 4] xyxy -> merged `TiledInstances`."""
    tiles = np.asarray(tiles, np.int64)
    cut_piece = [_is_cut(p.box, tiles[p.tile], image_size) for p in pieces]
    boxes, crops, scores, labels, cut = [], [], [], [], []
    for group in _groups(len(pieces), _match_pairs(pieces, tiles, merge_iou)):
        whole = [i for i in group if not cut_piece[i]]
        if whole:
            best = max(whole, key=lambda i: pieces[i].score)
            box, crop, score = pieces[best].box, pieces[best].crop, pieces[best].score
        else:
            box, crop = union_crops([pieces[i].box for i in group], [pieces[i].crop for i in group])
            score = max(pieces[i].score for i in group)
        boxes.append(box)
        crops.append(crop)
        scores.append(score)
        labels.append(pieces[group[0]].label)
        cut.append(not whole)
    keep = _nms(boxes, crops, scores, labels, cut, nms_iou)
    return TiledInstances(
        image_size=tuple(image_size),
        boxes=np.array([boxes[i] for i in keep], np.float32).reshape(-1, 4),
        crops=[crops[i] for i in keep],
        scores=np.array([scores[i] for i in keep], np.float32),
        labels=np.array([labels[i] for i in keep], np.int64),
        label_names=list(label_names),
        cut=np.array([cut[i] for i in keep], bool),
    )
