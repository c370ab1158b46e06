"""Large 2D images: segment overlapping tiles in batches, merge the instances across seams.

The image may be lazy (numpy memmap, zarr, a path opened with `sam3_core.formats.images.open_array`):
only one batch of tiles is read and converted at a time. Non-uint8 data is scaled to 8 bits
with percentiles estimated once on a strided sample of the whole image, so every tile sees
the same contrast. Results keep one cropped mask per instance (`TiledInstances`).

Exemplars are given in global pixels. `exemplar_mode`:
- "transfer" (default): each exemplar is encoded once, on the tile where it lies most
  centrally, and its prompt tokens join its concept on every tile, so one box finds similar
  objects across the whole image.
- "local": exemplars are translated into each tile and used where at least half of the box
  lies; on a tile with none, a concept with text uses its text alone, and an exemplar-only
  concept is skipped there.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sam3_core.formats.images import as_rgb8, intensity_range, open_array, scale_to_uint8
from sam3_core.large.sparse import TiledInstances
from sam3_core.large.tile_merge import TilePiece, merge_tiles, piece_from_mask, tile_grid
from sam3_core.modeling.detector import DetectorOutput, ImageFeatures
from sam3_core.postprocess import detections_to_instances
from sam3_core.prompts import VISUAL_TEXT, ConceptBatch, normalize_concepts
from sam3_core.results import Concept, Exemplar, Instances

LOCAL_MIN_INSIDE = 0.5  # "local" mode: an exemplar joins a tile holding this share of its box

Progress = Callable[[int, int], Any]


class TileReader:
    """Read [H, W] or [H, W, C] (lazy) arrays tile by tile as uint8 RGB, with global contrast."""

    def __init__(self, image: Any, channels: Sequence[int] | None = None) -> None:
        arr = open_array(image) if isinstance(image, (str, os.PathLike)) else image
        if arr.ndim not in (2, 3):
            raise ValueError(
                f"segment_tiled takes one 2D image [H, W] or [H, W, C]; got shape {arr.shape}. "
                "Pick a plane first (e.g. arr[z]) or reorder axes with sam3_core.formats.images.to_axes"
            )
        if arr.ndim == 3 and arr.shape[-1] > 4 and channels is None:
            raise ValueError(
                f"the image {arr.shape} has {arr.shape[-1]} channels last or is channel-first: "
                "reorder to [H, W, C] with sam3_core.formats.images.to_axes(arr, 'CYX', 'YXC') and/or "
                "pass channels=[...] (1 to 3 of them)"
            )
        self.array, self.channels = arr, None if channels is None else list(channels)
        self.size = (int(arr.shape[0]), int(arr.shape[1]))
        self.range = self._fit_range()

    def _pick(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if block.ndim == 2:
            return block[..., None]
        if self.channels is not None:
            return block[..., self.channels]
        return block[..., :3] if block.shape[-1] == 4 else block

    def _fit_range(self) -> tuple[np.ndarray, np.ndarray] | None:
        if np.dtype(self.array.dtype) in (np.uint8, np.bool_):
            return None
        if self.array.ndim == 2:
            return intensity_range(self.array)
        picked = self.channels
        if picked is None and self.array.shape[-1] == 4:
            picked = [0, 1, 2]  # RGBA: alpha is dropped
        return intensity_range(self.array, channels=picked, per_channel=self.channels is not None)

    def read(self, rect: np.ndarray) -> np.ndarray:
        """uint8 [h, w, 3] pixels of the tile rect (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = (int(v) for v in rect)
        return self._convert(self.array[y0:y1, x0:x1])

    def thumbnail(self, max_side: int = 2048) -> tuple[np.ndarray, int]:
        """(uint8 [h, w, 3] every step-th pixel, step): the whole image, longest side <= max_side."""
        step = max(1, -(-max(self.size) // max_side))
        return self._convert(self.array[::step, ::step]), step

    def _convert(self, block: np.ndarray) -> np.ndarray:
        block = self._pick(block)
        if block.dtype == np.bool_:
            block = block.astype(np.uint8) * 255
        elif self.range is not None:
            block = scale_to_uint8(block, *self.range)
        return as_rgb8(block)


def _home_tile(box: Sequence[float], tiles: np.ndarray) -> int:
    """The tile holding the box most centrally (largest smallest margin; else most overlap)."""
    x0, y0, x1, y1 = box
    margins = np.minimum.reduce(
        [x0 - tiles[:, 0], y0 - tiles[:, 1], tiles[:, 2] - x1, tiles[:, 3] - y1]
    )
    if margins.max() >= 0:
        return int(margins.argmax())
    iw = np.minimum(tiles[:, 2], x1) - np.maximum(tiles[:, 0], x0)
    ih = np.minimum(tiles[:, 3], y1) - np.maximum(tiles[:, 1], y0)
    return int((iw.clip(0) * ih.clip(0)).argmax())


def _tile_exemplars(boxes, positives, rect, min_inside: float = 0.0) -> list[Exemplar]:
    """Exemplars (global pixels) translated into the tile, kept when enough lies inside."""
    out = []
    x0, y0, x1, y1 = (float(v) for v in rect)
    for (bx0, by0, bx1, by1), pos in zip(boxes, positives):
        iw = min(bx1, x1) - max(bx0, x0)
        ih = min(by1, y1) - max(by0, y0)
        if iw <= 0 or ih <= 0 or iw * ih < min_inside * (bx1 - bx0) * (by1 - by0):
            continue
        out.append(Exemplar((bx0 - x0, by0 - y0, bx1 - x0, by1 - y0), pos))
    return out


class _TransferPrompts:
    """Every concept's prompt tokens (text + exemplars encoded on their home tiles), [C, L, D]."""

    def __init__(self, predictor, reader: TileReader, tiles: np.ndarray, batch: ConceptBatch):
        text, valid = predictor.encode_texts(batch.texts)
        parts, masks = [[t] for t in text], [[v] for v in valid]
        detector = predictor.model.detector_model
        for c, (boxes, positives) in enumerate(zip(batch.boxes, batch.positives)):
            homes: dict[int, list[int]] = {}
            for k, box in enumerate(boxes):
                homes.setdefault(_home_tile(box, tiles), []).append(k)
            for tile, ks in homes.items():
                rect = tiles[tile]
                state = predictor.set_image(reader.read(rect))
                local = _tile_exemplars([boxes[k] for k in ks], [positives[k] for k in ks], rect)
                one = ConceptBatch(
                    ["x"],
                    [[e.box for e in local]],
                    [[e.positive for e in local]],
                    ["x"],
                    state.size,
                )
                b, lab, ok = one.box_tensors(predictor.device)
                feats = state.features
                with predictor.lock, torch.inference_mode(), _autocast(predictor):
                    geo, geo_ok = detector.geometry_encoder(
                        b, lab, ok, feats.fpn[-1], feats.fpn_pos[-1]
                    )
                parts[c].append(geo[0].to(text.dtype))
                masks[c].append(geo_ok[0])
        rows = [torch.cat(p) for p in parts]
        length = max(len(r) for r in rows)
        self.prompt = text.new_zeros(len(rows), length, text.shape[-1])
        self.valid = torch.zeros(len(rows), length, dtype=torch.bool, device=text.device)
        for c, (r, m) in enumerate(zip(rows, masks)):
            self.prompt[c, : len(r)] = r
            self.valid[c, : len(r)] = torch.cat(m)


def _autocast(predictor):
    from sam3_core.device import autocast

    return autocast(predictor.device, predictor.precision)


@torch.inference_mode()
def _detect_transfer(predictor, states, prompts: _TransferPrompts, names, thresholds):
    """One detector pass for all tiles x concepts of a batch -> one `Instances` per tile."""
    c = prompts.prompt.shape[0]
    feats = ImageFeatures(
        torch.cat([s.features.vit for s in states]),
        [torch.cat([s.features.fpn[i] for s in states]) for i in range(3)],
        [torch.cat([s.features.fpn_pos[i] for s in states]) for i in range(3)],
    )
    rows = torch.arange(len(states), device=predictor.device).repeat_interleave(c)
    n = len(states)
    with predictor.lock, _autocast(predictor):  # the model is shared with other threads' calls
        out = predictor.model.detector_model(
            feats.select(rows), prompts.prompt.repeat(n, 1, 1), prompts.valid.repeat(n, 1)
        )
    results = []
    for t, state in enumerate(states):
        part = DetectorOutput(*(getattr(out, f)[t * c : (t + 1) * c] for f in _FIELDS))
        results.append(
            detections_to_instances(
                part, state.size, names, score_threshold=thresholds[0], mask_threshold=thresholds[1]
            )
        )
    return results


_FIELDS = ("logits", "presence", "boxes", "mask_logits", "semantic")


def _detect_local(predictor, state, rect, batch: ConceptBatch, thresholds) -> Instances | None:
    """Per-tile prompts with translated exemplars; labels mapped back to the global concepts."""
    concepts, index = [], []
    for c, (text, name) in enumerate(zip(batch.texts, batch.names)):
        ex = _tile_exemplars(batch.boxes[c], batch.positives[c], rect, LOCAL_MIN_INSIDE)
        exemplar_only = text == VISUAL_TEXT and name == "exemplar"
        if ex or not exemplar_only:
            concepts.append(Concept(None if exemplar_only else text, tuple(ex)))
            index.append(c)
    if not concepts:
        return None
    inst = predictor.predict(
        state, concepts, score_threshold=thresholds[0], mask_threshold=thresholds[1]
    )
    inst.labels = np.asarray(index, np.int64)[inst.labels]
    return inst


def segment_tiled(
    predictor,
    image: Any,
    concepts: str | Concept | Sequence[str | Concept] | None = None,
    exemplars: Sequence[Exemplar | Sequence[float]] | None = None,
    *,
    tile_size: int = 1008,
    overlap: int = 128,
    batch_size: int = 4,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    merge_iou: float = 0.5,
    nms_iou: float = 0.5,
    exemplar_mode: str = "transfer",
    channels: Sequence[int] | None = None,
    progress: Progress | bool | None = None,
) -> TiledInstances:
    """Every instance of the concepts in a large image [H, W(, C)] (array, lazy array, path or
    `TileReader`).

    Tiles of `tile_size` pixels overlapping by `overlap` go through the backbone
    `batch_size` at a time; exemplars are (x0, y0, x1, y1[, positive]) in global pixels (see
    the module docstring for `exemplar_mode`). Objects cut by seams come back once, whole:
    see `sam3_core.large.tile_merge`. `progress(done_tiles, total_tiles)` is called per batch
    (True shows a tqdm bar). Choose `overlap` above the typical object size.
    """
    if exemplar_mode not in ("transfer", "local"):
        raise ValueError(f"exemplar_mode={exemplar_mode!r}: use 'transfer' or 'local'")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: give 1 or more tiles per backbone pass")
    reader = image if isinstance(image, TileReader) else TileReader(image, channels)
    batch = normalize_concepts(concepts, exemplars, reader.size)
    tiles = tile_grid(reader.size, tile_size, overlap)
    thresholds = (score_threshold, mask_threshold)
    transfer = (
        _TransferPrompts(predictor, reader, tiles, batch) if exemplar_mode == "transfer" else None
    )
    report = _progress(progress, len(tiles))
    pieces: list[TilePiece] = []
    for start in range(0, len(tiles), batch_size):
        rects = tiles[start : start + batch_size]
        states = predictor.set_images([reader.read(r) for r in rects])
        if transfer is not None:
            found = _detect_transfer(predictor, states, transfer, batch.names, thresholds)
        else:
            found = [
                _detect_local(predictor, s, r, batch, thresholds) for s, r in zip(states, rects)
            ]
        for offset, (rect, inst) in enumerate(zip(rects, found)):
            for k in range(0 if inst is None else len(inst)):
                piece = piece_from_mask(
                    start + offset, rect, inst.masks[k], inst.scores[k], inst.labels[k]
                )
                if piece is not None:
                    pieces.append(piece)
        report(min(start + batch_size, len(tiles)))
    return merge_tiles(pieces, tiles, reader.size, batch.names, merge_iou, nms_iou)


def _progress(progress: Progress | bool | None, total: int) -> Callable[[int], None]:
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="tile")
        return lambda done: (bar.update(done - bar.n), done == total and bar.close())
    if callable(progress):
        return lambda done: progress(done, total)
    return lambda done: None
