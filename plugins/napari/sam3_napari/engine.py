"""The model side of the widget: a lazily loaded model and one predictor per embedding store.

No napari here and no model decisions: every call goes straight into sam3_core. The widget runs
these methods in a worker thread and passes `progress(done, total, message)` and `cancel`.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam3_core.results import Exemplar, Instances
from sam3_napari.messages import load_error, store_error
from sam3_napari.storage import StoreChoice, store_dir

Progress = Callable[[int, int, str], None]
DEFAULT_CHECKPOINT = "facebook/sam3"
PRECISION = "fp32"


class Cancelled(Exception):
    """The user pressed Cancel; the run stopped at the next step."""


class LoadError(RuntimeError):
    """The model or its embedding store could not be used; the message says what to set."""


@dataclass(frozen=True)
class ModelChoice:
    """Which weights to load: a hub id or local file, a config name and a device.

    An empty config or device means automatic: sam3_core's choice for the checkpoint.
    """

    checkpoint: str = DEFAULT_CHECKPOINT
    config: str = ""
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
    """One model, loaded on first use, and one predictor per embedding store folder.

    Image embeddings live in sam3_core's `EmbeddingStore` (memory tier plus a folder on disk,
    signed by the model): a plane encoded once answers every later prompt, also after napari
    restarts. Tiled runs use a predictor without a store (a large plane's tiles would fill it).
    """

    def __init__(self, memory_bytes: int = 1 << 30, max_stores: int = 4) -> None:
        self.memory_bytes = memory_bytes
        self.max_stores = max_stores
        self.cancel = threading.Event()
        self._choice: ModelChoice | None = None
        self._model = None
        self._digest = ""
        self._predictors: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()

    def check(self) -> None:
        """Raise `Cancelled` when Cancel was pressed."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def _load(self, choice: ModelChoice, progress: Progress) -> Any:
        """The model for `choice`, loaded (once) when it changed."""
        if self._model is None or choice != self._choice:
            from sam3_core.build import load_model
            from sam3_core.store.keys import model_signature, signature_digest

            progress(0, 3, f"loading {choice.checkpoint or DEFAULT_CHECKPOINT}")
            avoid_llvm_clash()
            self._model, self._predictors = None, OrderedDict()
            config = {"config": choice.config} if choice.config else {}
            try:
                model = load_model(choice.checkpoint or None, **config)
            except Exception as exc:  # every load failure needs the fix
                raise LoadError(load_error(choice.checkpoint, choice.config, exc)) from exc
            self._digest = signature_digest(model_signature(model, model.config, PRECISION))
            self._model, self._choice = model, choice
        return self._model

    def predictor(
        self, choice: ModelChoice, store: StoreChoice | None = None, progress: Progress = _noop
    ):
        """The `ImagePredictor` for `choice` on the store `store` (None: no store at all)."""
        from sam3_core.predictor import ImagePredictor
        from sam3_core.store import EmbeddingStore, StoreError

        with self._lock:
            model = self._load(choice, progress)
            folder = None if store is None else store_dir(store, self._digest)
            key = "none" if store is None else str(folder or "memory")
            if key not in self._predictors:
                embeddings = None
                try:
                    if store is not None:
                        embeddings = EmbeddingStore(folder, memory_bytes=self.memory_bytes)
                    self._predictors[key] = ImagePredictor(
                        model, choice.device or None, PRECISION, store=embeddings
                    )
                except StoreError as exc:
                    raise LoadError(store_error(folder, exc)) from exc
            self._predictors.move_to_end(key)
            while len(self._predictors) > self.max_stores:
                self._predictors.popitem(last=False)
            return self._predictors[key]

    def state(
        self,
        choice: ModelChoice,
        store: StoreChoice,
        plane: Callable[[], np.ndarray],
        progress: Progress = _noop,
    ):
        """The encoded plane `plane()` (uint8 RGB): from the store, else computed and stored."""
        pred = self.predictor(choice, store, progress)
        self.check()
        image = plane()
        if not pred.is_stored(image):
            where = pred.store.path.name if pred.store.path else "memory only"
            progress(1, 3, f"encoding the image (embedding store: {where})")
        return pred.set_image(image)

    def segment_concept(
        self,
        choice: ModelChoice,
        store: StoreChoice,
        plane: Callable[[], np.ndarray],
        concept: str,
        exemplars: Sequence[Exemplar],
        score_threshold: float = 0.5,
        progress: Progress = _noop,
    ) -> Instances:
        """Every instance of a concept (text and/or exemplar boxes) on one plane."""
        return self._answer(
            choice,
            store,
            plane,
            progress,
            f"finding '{concept or 'exemplar'}'",
            lambda inst: f"{len(inst)} instance(s)",
            concepts=concept or None,
            exemplars=list(exemplars) or None,
            score_threshold=score_threshold,
        )

    def segment_object(
        self,
        choice: ModelChoice,
        store: StoreChoice,
        plane: Callable[[], np.ndarray],
        xy: np.ndarray,
        labels: np.ndarray,
        mask_input: np.ndarray | None = None,
        progress: Progress = _noop,
    ) -> Instances:
        """One object from clicks, refined from the previous low-res mask when given."""
        return self._answer(
            choice,
            store,
            plane,
            progress,
            f"segmenting from {len(xy)} click(s)",
            lambda inst: f"score {float(inst.scores[0]):.2f}",
            points=xy,
            point_labels=labels,
            mask_input=mask_input,
            multimask=len(xy) == 1 and mask_input is None,
        )

    def _answer(
        self,
        choice: ModelChoice,
        store: StoreChoice,
        plane: Callable[[], np.ndarray],
        progress: Progress,
        doing: str,
        summary: Callable[[Instances], str],
        **prompts: Any,
    ) -> Instances:
        """Encode (or fetch) the plane, then `predict(state, **prompts)` on it; progress 2/3 says
        `doing`, 3/3 the `summary` of the result."""
        state = self.state(choice, store, plane, progress)
        self.check()
        progress(2, 3, doing)
        inst = self.predictor(choice, store).predict(state, **prompts)
        progress(3, 3, summary(inst))
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

        pred = self.predictor(choice, None, progress)

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
