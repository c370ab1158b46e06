"""Image API: encode an image once, then answer any number of concept prompts from the cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sam3_core.device import autocast, pick_device
from sam3_core.io import load_image
from sam3_core.modeling.detector import ImageFeatures
from sam3_core.modeling.sam3 import Sam3Model
from sam3_core.postprocess import detections_to_instances
from sam3_core.prompts import ConceptBatch, normalize_concepts
from sam3_core.results import Concept, Exemplar, Instances
from sam3_core.tokenizer import ClipTokenizer

ImageLike = Any  # path, numpy array or PIL image: see `sam3_core.io.load_image`


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
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return t[0]


class ImagePredictor:
    """Concept (and, through the tracker head, click) segmentation on cached image embeddings.

    `set_image` runs the backbone once; every `predict` on that state reuses it. All concepts
    of one call go through the detector as one batch; text embeddings are cached per concept.
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
        self.tokenizer = tokenizer or ClipTokenizer()
        self.image_size = model.config.image_size
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._text_cache_size = text_cache_size

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | None = None,
        *,
        config: str = "sam3",
        device: str | torch.device | None = None,
        precision: str = "fp32",
        token: str | None = None,
    ) -> "ImagePredictor":
        """Load the released weights (hub id, default `facebook/sam3`, or a local file)."""
        from sam3_core.build import load_model

        return cls(load_model(checkpoint, config=config, token=token), device, precision)

    # ----------------------------------------------------------------- images
    @torch.inference_mode()
    def set_images(self, images: Sequence[ImageLike]) -> list[ImageState]:
        """Encode a batch of images with one backbone pass; returns one state per image."""
        arrays = [load_image(im) for im in images]
        pixels = torch.stack([preprocess(a, self.image_size) for a in arrays]).to(self.device)
        pixels = (pixels.float() / 255.0 - 0.5) / 0.5
        with autocast(self.device, self.precision):
            feats = self.model.detector_model.vision_encoder(pixels)
        return [
            ImageState(a.shape[:2], feats.select(torch.tensor([i], device=self.device)))
            for i, a in enumerate(arrays)
        ]

    def set_image(self, image: ImageLike) -> ImageState:
        """Encode one image (path, HxWxC array or PIL image) and cache its features."""
        return self.set_images([image])[0]

    # ----------------------------------------------------------------- prompts
    def _encode_texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt features [N, L, C] and valid masks [N, L], from the per-concept cache."""
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

    @torch.inference_mode()
    def predict(
        self,
        state: ImageState,
        concepts: str | Concept | Sequence[str | Concept] | None = None,
        exemplars: Sequence[Exemplar | Sequence[float]] | None = None,
        *,
        score_threshold: float = 0.5,
        mask_threshold: float = 0.5,
    ) -> Instances:
        """Find every instance of each concept; `exemplars` apply to every concept given.

        concepts: noun phrases or `Concept`s; exemplars: `Exemplar`s or (x0, y0, x1, y1[, positive])
        in pixels. Returns the instances of all concepts, `labels` indexing the concepts.
        """
        batch = normalize_concepts(concepts, exemplars, state.size)
        out = self._detect(state, batch)
        return detections_to_instances(
            out, state.size, batch.names, score_threshold=score_threshold, mask_threshold=mask_threshold
        )

    def _detect(self, state: ImageState, batch: ConceptBatch):
        n = len(batch.texts)
        text, valid = self._encode_texts(batch.texts)
        image = state.features.select(torch.zeros(n, dtype=torch.long, device=self.device))
        boxes, labels, box_valid = batch.box_tensors(self.device)
        with autocast(self.device, self.precision):
            out = self.model.detector_model(image, text, valid, boxes, labels, box_valid)
        return out

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
