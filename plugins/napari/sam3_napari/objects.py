"""Click refinement of one object: which earlier low-res mask the next prediction starts from.

SAM refines an object by feeding the previous prediction's low-res logits back with the new
clicks. Feeding them back for the *same* clicks would refine the output with itself (a re-run
grows the mask), so every run is remembered by its clicks: the same clicks start from the same
input as before (same answer), added clicks from the longest earlier run they extend.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

Clicks = tuple[tuple[float, float, int], ...]


def click_key(xy: np.ndarray, labels: np.ndarray) -> Clicks:
    """Clicks (xy [P, 2] pixels, labels [P]) as a hashable key, rounded to 1/100 pixel."""
    return tuple(
        (round(float(x), 2), round(float(y), 2), int(lab))
        for (x, y), lab in zip(np.asarray(xy), labels)
    )


@dataclass
class ClickedObject:
    """The object being clicked on one plane (`key`), its id and its runs by clicks."""

    key: Hashable
    obj_id: int
    runs: dict[Clicks, tuple[np.ndarray | None, np.ndarray]] = field(default_factory=dict)

    def mask_input(self, clicks: Clicks) -> np.ndarray | None:
        """The low-res logits [h, w] to refine from for these clicks, or None (a fresh start)."""
        if clicks in self.runs:
            return self.runs[clicks][0]
        best: Clicks = ()
        for earlier in self.runs:
            if len(best) < len(earlier) < len(clicks) and clicks[: len(earlier)] == earlier:
                best = earlier
        return self.runs[best][1] if best else None

    def record(self, clicks: Clicks, mask_in: np.ndarray | None, logits: np.ndarray) -> None:
        """Remember a run: its clicks, the mask it started from and the logits it gave."""
        self.runs[clicks] = (mask_in, logits)
