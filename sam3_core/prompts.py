"""Validate user prompts and turn them into model tensors (pixel xyxy -> normalised cxcywh)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

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
    """Raise unless x0 < x1, y0 < y1 and the box overlaps the H x W image."""
    x0, y0, x1, y1 = box
    h, w = size
    if not (x1 > x0 and y1 > y0):
        raise PromptError(
            f"The {what} {tuple(box)} is empty or inverted: give (x0, y0, x1, y1) with x1 > x0 "
            "and y1 > y0, in pixels."
        )
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h or x0 < -0.5 * w or y0 < -0.5 * h:
        raise PromptError(
            f"The {what} {tuple(box)} lies outside the {w}x{h} image: give pixel coordinates "
            "of the original image (x0, y0, x1, y1)."
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
        """Right-padded boxes [N, K, 4] normalised cxcywh, labels [N, K], valid [N, K]."""
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
                x0, x1 = max(x0, 0.0), min(x1, float(w))
                y0, y1 = max(y0, 0.0), min(y1, float(h))
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
