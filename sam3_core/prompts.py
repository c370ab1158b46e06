"""Validate user prompts and turn them into model tensors (pixel xyxy -> normalised cxcywh)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sam3_core.results import Concept, Exemplar

VISUAL_TEXT = "visual"  # the text SAM 3 pairs with exemplar-only prompts


class PromptError(ValueError):
    """A prompt the model cannot take; the message says what to change."""


def to_exemplar(item: Exemplar | Sequence[float] | Sequence) -> Exemplar:
    """Accept an `Exemplar` or (x0, y0, x1, y1[, positive])."""
    if isinstance(item, Exemplar):
        return item
    vals = list(item)
    if len(vals) not in (4, 5):
        raise PromptError(
            f"An exemplar is (x0, y0, x1, y1) or (x0, y0, x1, y1, positive); got {item!r}."
        )
    return Exemplar(tuple(float(v) for v in vals[:4]), bool(vals[4]) if len(vals) == 5 else True)


def check_box(box: Sequence[float], size: tuple[int, int], what: str = "exemplar box") -> None:
    """Raise unless x0 < x1, y0 < y1, the box overlaps the H x W image and reaches at most
    half the image's width (height) past its left and right (top and bottom) edges."""
    x0, y0, x1, y1 = box
    h, w = size
    if not (x1 > x0 and y1 > y0):
        raise PromptError(
            f"The {what} {tuple(box)} is empty or inverted: give (x0, y0, x1, y1) with x1 > x0 "
            "and y1 > y0, in pixels."
        )
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise PromptError(
            f"The {what} {tuple(box)} lies outside the {w}x{h} image: give pixel coordinates "
            "of the original image (x0, y0, x1, y1)."
        )
    if x0 < -0.5 * w or x1 > 1.5 * w or y0 < -0.5 * h or y1 > 1.5 * h:
        raise PromptError(
            f"The {what} {tuple(box)} reaches more than half the image's size past an edge of "
            f"the {w}x{h} image (x must lie in [{-0.5 * w:g}, {1.5 * w:g}], y in "
            f"[{-0.5 * h:g}, {1.5 * h:g}]): give pixel coordinates of this image, not "
            "normalised ones or another image's."
        )


@dataclass
class ConceptBatch:
    """One row per concept: its text, its exemplars (pixel boxes, labels), its name."""

    texts: list[str]
    boxes: list[list[tuple[float, float, float, float]]]
    positives: list[list[bool]]
    names: list[str]
    size: tuple[int, int]

    def box_tensors(self, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        """Right-padded boxes [N, K, 4] normalised cxcywh (not clipped: a box partly outside
        the image goes in as given, as in transformers' `Sam3Processor`), labels [N, K],
        valid [N, K]."""
        k = max((len(b) for b in self.boxes), default=0)
        if k == 0:
            return None, None, None
        n = len(self.texts)
        h, w = self.size
        boxes = torch.zeros(n, k, 4)
        labels = torch.zeros(n, k, dtype=torch.long)
        valid = torch.zeros(n, k, dtype=torch.bool)
        for i, (bs, ps) in enumerate(zip(self.boxes, self.positives)):
            for j, ((x0, y0, x1, y1), p) in enumerate(zip(bs, ps)):
                boxes[i, j] = torch.tensor(
                    [(x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h]
                )
                labels[i, j] = int(p)
                valid[i, j] = True
        return boxes.to(device), labels.to(device), valid.to(device)


def normalize_concepts(
    concepts: str | Concept | Sequence[str | Concept] | None,
    exemplars: Sequence[Exemplar | Sequence[float]] | None,
    size: tuple[int, int],
) -> ConceptBatch:
    """Check concepts and exemplars; shared `exemplars` join every concept."""
    if isinstance(concepts, (str, Concept)):
        concepts = [concepts]
    shared = tuple(to_exemplar(e) for e in (exemplars or ()))
    items: list[Concept] = []
    for c in concepts or ():
        if isinstance(c, str):
            c = Concept(c)
        if not isinstance(c, Concept):
            raise PromptError(f"A concept is a string or a Concept; got {type(c).__name__}.")
        if c.text is not None and not c.text.strip():
            raise PromptError(
                "A concept is empty or blank: give a short noun phrase such as 'yellow school bus', "
                "or exemplar boxes."
            )
        items.append(Concept(c.text.strip() if c.text else None, c.exemplars + shared))
    if not items:
        if not shared:
            raise PromptError(
                "No prompt given: pass concepts=['a noun phrase', ...] and/or exemplars=[(x0, y0, "
                "x1, y1), ...]."
            )
        items = [Concept(None, shared)]
    for c in items:
        if c.text is None and not c.exemplars:
            raise PromptError("A Concept needs a text, exemplars or both.")
        for e in c.exemplars:
            check_box(e.box, size)
    return ConceptBatch(
        texts=[c.text or VISUAL_TEXT for c in items],
        boxes=[[e.box for e in c.exemplars] for c in items],
        positives=[[e.positive for e in c.exemplars] for c in items],
        names=[c.name for c in items],
        size=size,
    )


@dataclass
class ClickBatch:
    """Interactive prompts for N objects, in model-input pixels, as the tracker head takes them."""

    points: torch.Tensor | None  # [1, N, P, 2]
    labels: torch.Tensor | None  # [1, N, P]
    boxes: torch.Tensor | None  # [1, N, 4]
    mask_input: torch.Tensor | None  # [1, N, 1, h, w]
    num_objects: int


def _as_array(value, name: str, trailing: tuple[int, ...]):
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == len(trailing):
        arr = arr[None]
    if arr.ndim != len(trailing) + 1 or any(t and a != t for a, t in zip(arr.shape[1:], trailing)):
        shape = "x".join(str(t) if t else "?" for t in trailing)
        raise PromptError(
            f"{name} must have shape [{shape}] or [N, {shape}] for N objects; got {arr.shape}."
        )
    return arr


def normalize_clicks(
    points, point_labels, boxes, mask_input, size: tuple[int, int], model_size: int
) -> ClickBatch:
    """Check clicks/boxes/masks given in original-image pixels and scale them to the model input."""
    h, w = size
    scale = np.array([model_size / w, model_size / h], np.float32)
    n_sizes = []
    pts = lbl = bxs = msk = None
    if points is not None or point_labels is not None:
        if points is None or point_labels is None:
            raise PromptError("Give points and point_labels together (1 = positive, 0 = negative).")
        pts = _as_array(points, "points", (0, 2))
        lbl = np.asarray(point_labels, dtype=np.int64)
        lbl = lbl[None] if lbl.ndim == 1 else lbl
        if lbl.shape != pts.shape[:2]:
            raise PromptError(
                f"points {pts.shape[:2]} and point_labels {lbl.shape} differ in length: give one "
                "label (1 positive, 0 negative) per point."
            )
        if pts.shape[1] == 0:
            raise PromptError("points is empty: give at least one (x, y) click, or a box.")
        if not np.isin(lbl, (0, 1)).all():
            raise PromptError("point_labels must be 1 (positive) or 0 (negative).")
        outside = (pts[..., 0] < 0) | (pts[..., 0] > w) | (pts[..., 1] < 0) | (pts[..., 1] > h)
        if outside.any():
            bad = pts[outside][0]
            raise PromptError(
                f"The point ({bad[0]:g}, {bad[1]:g}) lies outside the {w}x{h} image: give (x, y) "
                "in pixels of the original image."
            )
        n_sizes.append(len(pts))
        pts = torch.from_numpy(pts * scale)[None]
        lbl = torch.from_numpy(lbl)[None]
    if boxes is not None:
        arr = _as_array(boxes, "boxes", (4,))
        for b in arr:
            check_box(tuple(b), size, what="box")
        n_sizes.append(len(arr))
        bxs = torch.from_numpy(arr * np.tile(scale, 2))[None]
    if mask_input is not None:
        arr = _as_array(mask_input, "mask_input", (0, 0))
        n_sizes.append(len(arr))
        msk = torch.from_numpy(arr)[None, :, None]
    if not n_sizes:
        raise PromptError(
            "No interactive prompt: give points with point_labels, boxes, or a mask_input."
        )
    if len(set(n_sizes)) != 1:
        raise PromptError(
            f"Prompts disagree on the number of objects ({n_sizes}): give points, boxes and "
            "mask_input for the same N objects."
        )
    return ClickBatch(pts, lbl, bxs, msk, n_sizes[0])


def mask_prompt(
    mask: Any, size: tuple[int, int], model_size: int, device: torch.device
) -> torch.Tensor:
    """bool [H, W] mask at the video size -> [1, 1, S, S] {0, 1} at the model size (as SAM 2:
    antialiased bilinear resize, then >= 0.5)."""
    arr = np.asarray(mask)
    if arr.shape != size:
        raise PromptError(
            f"mask shape {arr.shape} differs from the video size {size}; give a bool "
            "mask [H, W] at the video's resolution."
        )
    t = torch.from_numpy(arr.astype(np.float32))[None, None].to(device)
    t = F.interpolate(
        t, size=(model_size, model_size), mode="bilinear", align_corners=False, antialias=True
    )
    return (t >= 0.5).float()
