"""Image API: encode an image once, then answer any number of concept prompts from the cache."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from sam3_core.device import autocast, pick_device, precision_dtype
from sam3_core.formats.images import load_image
from sam3_core.modeling.detector import DetectorOutput, ImageFeatures
from sam3_core.modeling.sam3 import Sam3Model
from sam3_core.modeling.tokenizer import ClipTokenizer
from sam3_core.postprocess import detections_to_instances, masks_to_instances
from sam3_core.prompts import ConceptBatch, PromptError, normalize_clicks, normalize_concepts
from sam3_core.results import Concept, Exemplar, Instances

ImageLike = Any  # path, numpy array or PIL image: see `sam3_core.formats.images.load_image`
CONCEPT_PARTS = ("vision encoder", "detector")
CLICK_PARTS = ("vision encoder", "tracker")
_Method = TypeVar("_Method", bound=Callable[..., Any])


def serialized(method: _Method) -> _Method:
    """Run a predictor method under its lock and in inference mode (caches are shared state)."""

    @functools.wraps(method)
    def locked(self: ImagePredictor, *args: Any, **kwargs: Any) -> Any:
        with self.lock, torch.inference_mode():
            return method(self, *args, **kwargs)

    return locked  # type: ignore[return-value]


@dataclass
class ImageState:
    """One encoded image: its size and cached backbone features (on the model's device)."""

    size: tuple[int, int]
    features: ImageFeatures
    cache: dict = field(default_factory=dict)


def preprocess(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [H, W, 3] -> uint8 [3, size, size]: bilinear antialiased resize, aspect not kept."""
    t = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(
            t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return t[0]


class ImagePredictor:
    """Concept (and, through the tracker head, click) segmentation on cached image embeddings.

    `set_image` runs the backbone once; every `predict` on that state reuses it. All concepts
    of one call go through the detector as one batch; text embeddings are cached per concept.
    One predictor may be shared between threads: its calls take turns (`lock`), since they
    share the model, the text cache and the states' caches.
    """

    def __init__(
        self,
        model: Sam3Model,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        tokenizer: ClipTokenizer | None = None,
        text_cache_size: int = 1024,
    ) -> None:
        self.device = pick_device(device)
        self.model = model.eval().to(self.device)
        self.precision = precision
        _match_weights(self.model, precision)
        self.tokenizer = tokenizer or ClipTokenizer()
        self.image_size = model.config.image_size
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._text_cache_size = text_cache_size
        self.lock = threading.RLock()

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | None = None,
        *,
        config: str = "sam3",
        device: str | torch.device | None = None,
        precision: str = "fp32",
        token: str | None = None,
    ) -> ImagePredictor:
        """Load the released weights (hub id, default `facebook/sam3`, or a local file)."""
        from sam3_core.build import load_model

        return cls(load_model(checkpoint, config=config, token=token), device, precision)

    # ----------------------------------------------------------------- images
    @serialized
    def set_images(self, images: Sequence[ImageLike]) -> list[ImageState]:
        """Encode a batch of images with one backbone pass; returns one state per image."""
        arrays = [load_image(im) for im in images]
        pixels = torch.stack([preprocess(a, self.image_size) for a in arrays]).to(self.device)
        pixels = (pixels.float() / 255.0 - 0.5) / 0.5
        with autocast(self.device, self.precision):
            feats = self.model.detector_model.vision_encoder(pixels)
        return [ImageState(a.shape[:2], feats.item(i)) for i, a in enumerate(arrays)]

    def set_image(self, image: ImageLike) -> ImageState:
        """Encode one image (path, HxWxC array or PIL image) and cache its features."""
        return self.set_images([image])[0]

    # ----------------------------------------------------------------- prompts
    @serialized
    def encode_texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt features [N, L, C] and valid masks [N, L], from the per-concept cache."""
        self.model.require_parts(*CONCEPT_PARTS, task="concepts and exemplars")
        missing = [t for t in dict.fromkeys(texts) if t not in self._text_cache]
        if missing:
            ids, valid = self.tokenizer(missing)
            with autocast(self.device, self.precision):
                feats = self.model.detector_model.encode_text(ids.to(self.device))
            for t, f, v in zip(missing, feats, valid.to(self.device)):
                self._text_cache[t] = (f, v)
        for t in texts:
            self._text_cache.move_to_end(t)
        while len(self._text_cache) > self._text_cache_size:
            self._text_cache.popitem(last=False)
        feats, valid = zip(*(self._text_cache[t] for t in texts))
        return torch.stack(feats), torch.stack(valid)

    @serialized
    def predict(
        self,
        state: ImageState,
        concepts: str | Concept | Sequence[str | Concept] | None = None,
        exemplars: Sequence[Exemplar | Sequence[float]] | None = None,
        *,
        points: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multimask: bool = True,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
    ) -> Instances:
        """Concept mode: every instance of each concept. Interactive mode: one mask per object.

        concepts: noun phrases or `Concept`s; exemplars: `Exemplar`s or (x0, y0, x1, y1[, positive])
        in pixels, joined to every concept. Returns all concepts' instances, `labels` indexing them.

        Interactive (SAM 1/2 task, on the same cached image features): points [P, 2] or
        [N, P, 2] pixel (x, y) with point_labels [P] / [N, P] (1 positive, 0 negative); boxes
        [4] / [N, 4] xyxy pixels; mask_input [h, w] / [N, h, w] low-res logits from an earlier
        result (`Instances.low_res_logits`). With `multimask` the best of three candidate masks
        (by predicted IoU) is returned; scores are predicted IoUs.
        """
        interactive = any(v is not None for v in (points, point_labels, boxes, mask_input))
        if interactive:
            if concepts is not None or exemplars is not None:
                raise PromptError(
                    "Give either concepts/exemplars (find every instance) or points/boxes/"
                    "mask_input (segment one object per prompt), not both in one call."
                )
            return self._segment_objects(state, points, point_labels, boxes, mask_input, multimask)
        batch = normalize_concepts(concepts, exemplars, state.size)
        out = self.detect_concepts(state, batch)
        return detections_to_instances(
            out,
            state.size,
            batch.names,
            score_threshold=score_threshold,
            mask_threshold=mask_threshold,
        )

    @serialized
    def refine(
        self,
        state: ImageState,
        instances: Instances,
        index: int,
        points: Any,
        point_labels: Any,
        multimask: bool = False,
    ) -> Instances:
        """Refine instance `index` of an earlier result with clicks, from its box and mask."""
        return self.predict(
            state,
            points=np.asarray(points, np.float32)[None],
            point_labels=np.asarray(point_labels)[None],
            boxes=instances.boxes[index][None],
            mask_input=instances.low_res_logits[index][None],
            multimask=multimask,
        )

    @serialized
    def tracker_features(self, state: ImageState):
        """The tracker head's view of the cached backbone output, computed once per image."""
        self.model.require_parts(*CLICK_PARTS, task="clicks, boxes and video")
        if "tracker" not in state.cache:
            vit = state.features.vit.permute(0, 3, 1, 2)
            with autocast(self.device, self.precision):
                tracker = self.model.tracker_model
                state.cache["tracker"] = tracker.encode_image(self.model.tracker_neck, vit)
        return state.cache["tracker"]

    def _segment_objects(
        self, state, points, point_labels, boxes, mask_input, multimask
    ) -> Instances:
        clicks = normalize_clicks(
            points, point_labels, boxes, mask_input, state.size, self.image_size
        )
        to = lambda t: None if t is None else t.to(self.device)
        with autocast(self.device, self.precision):
            out = self.model.tracker_model.predict_masks(
                self.tracker_features(state),
                to(clicks.points),
                to(clicks.labels),
                to(clicks.boxes),
                to(clicks.mask_input),
                multimask=multimask,
            )
        best = out.iou_scores[0].float().argmax(-1)
        rows = torch.arange(clicks.num_objects, device=best.device)
        low_res = out.low_res_masks[0][rows, best].float()
        return masks_to_instances(low_res, out.iou_scores[0][rows, best].float(), state.size)

    @serialized
    def detect_concepts(self, state: ImageState, batch: ConceptBatch) -> DetectorOutput:
        """The detector's raw output for every concept of `batch` on one cached image (one
        row per concept: scores [n, Q], boxes, mask logits), before thresholds."""
        n = len(batch.texts)
        text, valid = self.encode_texts(batch.texts)
        image = state.features.repeat(n)
        boxes, labels, box_valid = batch.box_tensors(self.device)
        with autocast(self.device, self.precision):
            out = self.model.detector_model(image, text, valid, boxes, labels, box_valid)
        return out

    @serialized
    def predict_batch(
        self,
        images: Sequence[ImageLike],
        concepts: str | Concept | Sequence[str | Concept] | None = None,
        exemplars: Sequence[Exemplar | Sequence[float]] | None = None,
        *,
        batch_size: int = 4,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
    ) -> list[Instances]:
        """Segment the same concepts in many images, `batch_size` images per backbone pass."""
        results: list[Instances] = []
        for start in range(0, len(images), batch_size):
            for state in self.set_images(images[start : start + batch_size]):
                results.append(
                    self.predict(
                        state,
                        concepts,
                        exemplars,
                        score_threshold=score_threshold,
                        mask_threshold=mask_threshold,
                    )
                )
        return results


def _match_weights(model: Sam3Model, precision: str) -> None:
    """bf16/fp16: store the matmul weights in that dtype once (see `cast_matmul_weights_`);
    a model already cast for another precision is refused rather than silently mixed."""
    want = precision_dtype(precision) or torch.float32
    have = model.matmul_dtype
    if have == want:
        return
    if have != torch.float32:
        raise ValueError(
            f"This model's weights were cast to {have} for another predictor, so it cannot run "
            f"with precision={precision!r}; load a separate model (e.g. `load_model`) for it."
        )
    model.cast_matmul_weights_(want)
