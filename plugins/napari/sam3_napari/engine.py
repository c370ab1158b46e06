"""The model side of the widget: a lazily loaded predictor and cached plane embeddings.

No napari here and no model decisions: every call goes straight into sam3_core. The widget runs
these methods in a worker thread and passes `progress(done, total, message)` and `cancel`.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam3_core.results import Exemplar, Instances

Progress = Callable[[int, int, str], None]
DEFAULT_CHECKPOINT = "facebook/sam3"


class Cancelled(Exception):
    """The user pressed Cancel; the run stopped at the next step."""


@dataclass(frozen=True)
class ModelChoice:
    """Which weights to load: a hub id or local file, a config name and a device ('' = auto)."""

    checkpoint: str = DEFAULT_CHECKPOINT
    config: str = "sam3"
    device: str = ""


def _noop(done: int, total: int, message: str) -> None:
    return None


def avoid_llvm_clash() -> bool:
    """Keep torch from loading triton into a process whose OpenGL already loaded Mesa's LLVM.

    Under software OpenGL (Mesa llvmpipe: Xvfb, VMs, remote desktops) napari's canvas loads
    libLLVM; triton (shipped with CUDA builds of torch, imported lazily by torch internals)
    bundles another LLVM and segfaults when loaded after it. Prediction does not need triton,
    so it is marked unavailable for this process. Returns True when it did so.
    """
    if "triton" in sys.modules or not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/maps") as maps:
            if "libLLVM" not in maps.read():
                return False
    except OSError:
        return False
    sys.modules["triton"] = None  # `import triton` now raises ImportError: torch skips it
    return True


class Engine:
    """One predictor, loaded on first use, and an LRU of image embeddings keyed by layer + plane."""

    def __init__(self, max_planes: int = 8) -> None:
        self.max_planes = max_planes
        self.cancel = threading.Event()
        self._choice: ModelChoice | None = None
        self._predictor = None
        self._states: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def check(self) -> None:
        """Raise `Cancelled` when Cancel was pressed."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def predictor(self, choice: ModelChoice, progress: Progress = _noop):
        """The cached `ImagePredictor` for `choice`, loading it (once) when it changed."""
        with self._lock:
            if self._predictor is None or choice != self._choice:
                from sam3_core.predictor import ImagePredictor

                progress(0, 3, f"loading {choice.checkpoint} ({choice.config})")
                avoid_llvm_clash()
                self._predictor = ImagePredictor.from_pretrained(
                    choice.checkpoint or None, config=choice.config, device=choice.device or None
                )
                self._choice = choice
                self._states.clear()
            return self._predictor

    def has_embedding(self, key: Hashable) -> bool:
        """Whether the plane `key` is already encoded (the next prompt answers at once)."""
        return key in self._states

    def forget(self) -> None:
        """Drop every cached embedding (e.g. after the image data changed)."""
        self._states.clear()

    def state(
        self,
        choice: ModelChoice,
        key: Hashable,
        plane: Callable[[], np.ndarray],
        progress: Progress = _noop,
    ):
        """The encoded plane for `key`, computed from `plane()` (uint8 RGB) on a cache miss."""
        pred = self.predictor(choice, progress)
        if key in self._states:
            self._states.move_to_end(key)
            return self._states[key]
        self.check()
        progress(1, 3, "encoding the image")
        state = pred.set_image(plane())
        self._states[key] = state
        while len(self._states) > self.max_planes:
            self._states.popitem(last=False)
        return state

    def segment_concept(
        self,
        choice: ModelChoice,
        key: Hashable,
        plane: Callable[[], np.ndarray],
        concept: str,
        exemplars: Sequence[Exemplar],
        score_threshold: float = 0.5,
        progress: Progress = _noop,
    ) -> Instances:
        """Every instance of a concept (text and/or exemplar boxes) on one plane."""
        state = self.state(choice, key, plane, progress)
        self.check()
        progress(2, 3, f"finding '{concept or 'exemplar'}'")
        inst = self.predictor(choice).predict(
            state, concept or None, list(exemplars) or None, score_threshold=score_threshold
        )
        progress(3, 3, f"{len(inst)} instance(s)")
        return inst

    def segment_object(
        self,
        choice: ModelChoice,
        key: Hashable,
        plane: Callable[[], np.ndarray],
        xy: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None = None,
        progress: Progress = _noop,
    ) -> Instances:
        """One object from clicks, refined from the previous low-res mask when given."""
        state = self.state(choice, key, plane, progress)
        self.check()
        progress(2, 3, f"segmenting from {len(xy)} click(s)")
        inst = self.predictor(choice).predict(
            state,
            points=xy,
            point_labels=labels,
            mask_input=mask_input,
            multimask=len(xy) == 1 and mask_input is None,
        )
        progress(3, 3, f"score {float(inst.scores[0]):.2f}")
        return inst

    def segment_tiled(
        self,
        choice: ModelChoice,
        image: np.ndarray,
        concept: str,
        exemplars: Sequence[Exemplar],
        tile_size: int,
        overlap: int,
        score_threshold: float = 0.5,
        channels: Sequence[int] | None = None,
        progress: Progress = _noop,
    ) -> np.ndarray:
        """A large plane through `sam3_core.large.tiling.segment_tiled` -> uint32 label image."""
        from sam3_core.large.tiling import segment_tiled

        pred = self.predictor(choice, progress)

        def report(done: int, total: int) -> None:
            self.check()
            progress(done, total, f"tile {done}/{total}")

        found = segment_tiled(
            pred,
            image,
            concept or None,
            list(exemplars) or None,
            tile_size=tile_size,
            overlap=overlap,
            score_threshold=score_threshold,
            channels=channels,
            progress=report,
        )
        return found.to_label_image(np.uint32)
