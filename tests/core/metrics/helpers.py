"""Small hand-built masks and regions for the metric tests."""

from __future__ import annotations

import numpy as np

H, W = 20, 20


def rect(x0: int, y0: int, x1: int, y1: int, h: int = H, w: int = W) -> np.ndarray:
    """bool [h, w], True on columns x0..x1-1 and rows y0..y1-1."""
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def gt(concept: str, mask: np.ndarray, **extra) -> dict:
    """A ground-truth region."""
    return {"concept": concept, "mask": mask, **extra}


def pred(concept: str, mask: np.ndarray, score: float) -> dict:
    """A predicted region."""
    return {"concept": concept, "mask": mask, "score": score}
