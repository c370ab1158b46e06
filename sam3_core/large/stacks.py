"""Z-stacks and time-lapses: per-slice concept detection linked into consistent object ids.

method="link": every slice is segmented (slices batched through the backbone), then instances
of consecutive slices are matched by mask IoU (Hungarian with scipy, else greedy); unmatched
instances start new ids, so objects appearing mid-stack get their own. A track may skip up to
`max_gap` slices without a detection and keep its id (0: no gap).
method="track": the video tracker (`sam3_core.video.predictor.VideoPredictor`) propagates the concepts
and clicks through the stack with its memory, forward and backward.

Either way slices are read one at a time (numpy, memmap, zarr or `to_axes` views stay lazy),
and a volume that is not uint8 is scaled to 8 bits with one intensity range for all its slices
(`normalize_stack`), so an object keeps its brightness from slice to slice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam3_core.formats.bioformats import track_rows
from sam3_core.formats.images import as_rgb8, intensity_range, scale_to_uint8
from sam3_core.prompts import PromptError
from sam3_core.results import Concept, Exemplar, Instances


@dataclass
class StackResult:
    """Label volume [Z, H, W] (0 background, ids consistent across slices) and its tracks.

    tracks: int64 [K, 4] rows (id, first slice, last slice, parent id or 0) as the Cell
    Tracking Challenge writes them; track_labels: int64 [K] concept index of each track.
    """

    labels: np.ndarray
    tracks: np.ndarray
    track_labels: np.ndarray
    label_names: list[str]


class NormalizedStack:
    """A [Z, H, W(, C)] (lazy) stack read slice by slice: `[z]` -> uint8 RGB [H, W, 3].

    Data that is not uint8 is scaled with one intensity range for the whole volume
    (`range`, from a strided sample: `sam3_core.formats.images.intensity_range`); two
    channels, or picked `channels`, get one range per channel.
    """

    def __init__(self, stack: Any, channels: Sequence[int] | None = None) -> None:
        if getattr(stack, "ndim", 0) not in (3, 4):
            raise ValueError(
                f"a stack is [Z, H, W] or [Z, H, W, C]; got shape {getattr(stack, 'shape', None)}"
            )
        self.stack, self.channels = stack, None if channels is None else list(channels)
        dtype = np.dtype(stack.dtype)
        per_channel = stack.ndim == 4 and (channels is not None or stack.shape[-1] == 2)
        picked = self.channels
        if picked is None and stack.ndim == 4 and stack.shape[-1] == 4:
            picked = [0, 1, 2]  # RGBA: alpha is dropped
        self.range = (
            None
            if dtype in (np.uint8, np.bool_)
            else intensity_range(stack, channels=picked, per_channel=per_channel)
        )
        self._picked = picked if stack.ndim == 4 else None
        self.shape = (int(stack.shape[0]), *self[0].shape)
        self.ndim, self.dtype = 4, np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, z: int) -> np.ndarray:
        """Slice z as uint8 RGB [H, W, 3]."""
        if not isinstance(z, (int, np.integer)):
            raise TypeError(f"index a NormalizedStack with one slice number, got {z!r}")
        block = np.asarray(self.stack[z])
        if self._picked is not None:
            block = block[..., self._picked]
        if block.dtype == np.bool_:
            block = block.astype(np.uint8) * 255
        elif self.range is not None:
            block = scale_to_uint8(block, *self.range)
        return as_rgb8(block)


def normalize_stack(stack: Any, channels: Sequence[int] | None = None) -> NormalizedStack:
    """A [Z, H, W(, C)] stack as lazily read uint8 RGB slices with one volume-wide contrast."""
    return stack if isinstance(stack, NormalizedStack) else NormalizedStack(stack, channels)


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool [N, H, W] x bool [M, H, W] -> float [N, M] mask IoU."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def assign(cost_iou: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """One-to-one matches (row, col) maximising IoU, each at `min_iou` or above."""
    if cost_iou.size == 0:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        pairs, used_r, used_c = [], set(), set()
        flat = np.argsort(-cost_iou, axis=None, kind="stable")
        for r, c in zip(*np.unravel_index(flat, cost_iou.shape)):
            if cost_iou[r, c] < min_iou:
                break
            if r not in used_r and c not in used_c:
                used_r.add(r)
                used_c.add(c)
                pairs.append((int(r), int(c)))
        return sorted(pairs)
    rows, cols = linear_sum_assignment(-cost_iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost_iou[r, c] >= min_iou]


def link_slices(
    masks: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None = None,
    min_iou: float = 0.3,
    max_gap: int = 1,
) -> list[np.ndarray]:
    """Per-slice bool masks [N_z, H, W] -> per-slice int64 ids [N_z] (1, 2, ...) across slices.

    An instance continues the track whose latest mask (same label; with at most `max_gap`
    empty slices in between) overlaps it best; unmatched instances open new tracks.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap={max_gap}: give the number of slices a track may skip, >= 0")
    active: dict[int, tuple[np.ndarray, int, int]] = {}  # id -> (mask, slice, label)
    next_id, out = 1, []
    for z, cur in enumerate(masks):
        cur_labels = np.zeros(len(cur), np.int64) if labels is None else np.asarray(labels[z])
        live = [k for k, (_, last, _) in active.items() if z - last - 1 <= max_gap]
        ids = np.zeros(len(cur), np.int64)
        if live:
            prev = np.stack([active[k][0] for k in live])
            iou = _iou_matrix(prev, cur)
            same = np.array([active[k][2] for k in live])[:, None] == cur_labels[None]
            for r, c in assign(np.where(same, iou, 0.0), min_iou):
                ids[c] = live[r]
        for c in np.flatnonzero(ids == 0):
            ids[c], next_id = next_id, next_id + 1
        for c, k in enumerate(ids):
            active[int(k)] = (cur[c], z, int(cur_labels[c]))
        out.append(ids)
    return out


def paint_volume(
    masks: Sequence[np.ndarray],
    ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray] | None = None,
    dtype=np.uint32,
) -> np.ndarray:
    """Per-slice masks + ids -> label volume [Z, H, W]; the higher score wins overlaps."""
    z = len(masks)
    h, w = masks[0].shape[1:] if len(masks) and masks[0].ndim == 3 else (0, 0)
    top = max((int(i.max()) for i in ids if len(i)), default=0)
    if top > np.iinfo(dtype).max:
        raise ValueError(f"{top} track ids do not fit in {np.dtype(dtype).name}; use np.uint32")
    vol = np.zeros((z, h, w), dtype)
    for k in range(z):
        order = np.argsort(scores[k]) if scores is not None else np.arange(len(ids[k]))[::-1]
        for i in order:
            vol[k][masks[k][i]] = ids[k][i]
    return vol


def _slices(stack: Any, axes: str | None):
    if axes is not None:
        from sam3_core.formats.images import to_axes

        stack = to_axes(stack, axes, "ZYX(C)")
    if stack.ndim not in (3, 4):
        raise ValueError(
            f"a stack is [Z, H, W] or [Z, H, W, C] (or [T, ...]); got shape {tuple(stack.shape)}. "
            "Pass axes='TZCYX'-style letters to reorder, and select other axes first"
        )
    return stack


def _segment_link(predictor, stack, concepts, exemplars, batch_size, thresholds, progress):
    per_slice: list[Instances] = []
    for start in range(0, len(stack), batch_size):
        images = [np.asarray(stack[z]) for z in range(start, min(start + batch_size, len(stack)))]
        for z, state in enumerate(predictor.set_images(images), start):
            ex = exemplars.get(z, ()) if isinstance(exemplars, Mapping) else exemplars or ()
            if concepts is None and not ex:
                per_slice.append(None)
                continue
            per_slice.append(
                predictor.predict(
                    state,
                    concepts,
                    list(ex) or None,
                    score_threshold=thresholds[0],
                    mask_threshold=thresholds[1],
                )
            )
        if progress:
            progress(min(start + batch_size, len(stack)), len(stack))
    names = next((p.label_names for p in per_slice if p is not None), ["exemplar"])
    h, w = per_slice[0].image_size if per_slice[0] is not None else np.asarray(stack[0]).shape[:2]
    empty = np.zeros((0, h, w), bool)
    masks = [p.masks if p is not None else empty for p in per_slice]
    labels = [p.labels if p is not None else np.zeros(0, np.int64) for p in per_slice]
    scores = [p.scores if p is not None else np.zeros(0, np.float32) for p in per_slice]
    return masks, labels, scores, names


def _segment_track(predictor, stack, concepts, exemplars, clicks, thresholds, progress):
    from sam3_core.video.predictor import VideoPredictor

    session = VideoPredictor(predictor.model, predictor.device, predictor.precision).start(stack)
    if concepts is not None or exemplars:
        frame = min(exemplars) if isinstance(exemplars, Mapping) and exemplars else 0
        ex = exemplars.get(frame) if isinstance(exemplars, Mapping) else exemplars
        session.add_concept(frame, concepts, ex)
    for frame, objects in (clicks or {}).items():
        for obj in objects:
            session.add_prompt(frame, **obj)
    n = len(stack)
    found: dict[int, Instances] = {}
    for t, inst in session.propagate(direction="both"):
        found[t] = inst
        if progress:
            progress(len(found), n)
    h, w = session.size
    masks, ids, labels, scores = [], [], [], []
    for t in range(n):
        inst = found.get(t)
        keep = np.ones(0, bool) if inst is None else inst.scores >= thresholds[0]
        masks.append(np.zeros((0, h, w), bool) if inst is None else inst.masks[keep])
        ids.append(np.zeros(0, np.int64) if inst is None else inst.track_ids[keep])
        labels.append(np.zeros(0, np.int64) if inst is None else inst.labels[keep])
        scores.append(np.zeros(0, np.float32) if inst is None else inst.scores[keep])
    return masks, ids, labels, scores, session.label_names


def segment_stack(
    predictor,
    stack: Any,
    concepts: str | Concept | Sequence[str | Concept] | None = None,
    exemplars: Sequence[Exemplar | Sequence[float]] | Mapping[int, Sequence] | None = None,
    *,
    clicks: Mapping[int, Sequence[dict]] | None = None,
    method: str = "link",
    axes: str | None = None,
    batch_size: int = 4,
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    min_iou: float = 0.3,
    max_gap: int = 1,
    dtype=np.uint32,
    progress: Callable[[int, int], Any] | None = None,
) -> StackResult:
    """Segment a stack [Z, H, W(, C)] or time-lapse [T, ...] into a label volume [Z, H, W].

    concepts apply to every slice; exemplars are boxes for every slice, or {slice: boxes}
    (with "link", each slice uses its own; with "track", the first prompted slice seeds it).
    clicks ("track" only): {slice: [dict(points=..., point_labels=...) | dict(boxes=...)]}.
    `axes` names the stack's axes (e.g. 'TCYX') to reorder it to ZYX(C). Slices are read one
    at a time; non-uint8 data gets one intensity range for the whole volume (`normalize_stack`).
    `max_gap` ("link"): slices a track may miss and keep its id.
    """
    if method not in ("link", "track"):
        raise ValueError(f"method={method!r}: use 'link' (per-slice IoU linking) or 'track'")
    stack = normalize_stack(_slices(stack, axes))
    thresholds = (score_threshold, mask_threshold)
    if method == "track":
        masks, ids, labels, scores, names = _segment_track(
            predictor, stack, concepts, exemplars, clicks, thresholds, progress
        )
    else:
        if clicks:
            raise PromptError(
                "clicks follow an object through slices only with method='track' (the video "
                "tracker); with method='link' give concepts or exemplars"
            )
        if concepts is None and not exemplars:
            raise PromptError("No prompt: give concepts=['a noun phrase'] and/or exemplars.")
        masks, labels, scores, names = _segment_link(
            predictor, stack, concepts, exemplars, batch_size, thresholds, progress
        )
        ids = link_slices(masks, labels, min_iou, max_gap)
    volume = paint_volume(masks, ids, scores, dtype)
    tracks = track_rows(volume)
    by_id = {int(i): int(lab) for zi, zl in zip(ids, labels) for i, lab in zip(zi, zl)}
    track_labels = np.array([by_id.get(int(t), 0) for t in tracks[:, 0]], np.int64)
    return StackResult(volume, tracks, track_labels, list(names))
