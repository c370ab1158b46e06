"""Image API: encode an image once, then answer any number of concept prompts from the cache."""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
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
from sam3_core.store import EmbeddingStore, StoredImage, StoreError
from sam3_core.store import entries as parts
from sam3_core.store.keys import image_key, model_signature

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


class ImageState:
    """One encoded image: its size (H, W), backbone features and per-head caches (on the
    model's device); `key`: its embedding-store key (None without a store).

    From a store, features come lazily, each part on first use: the trunk (`load`, from the
    store or, if its entry went bad, recomputed from the kept `pixels`), the detector's FPN
    levels (`fill`, for a concept prompt); a click on a precomputed image reads neither.
    """

    def __init__(
        self,
        size: tuple[int, int],
        features: ImageFeatures | None,
        cache: dict | None = None,
        key: str | None = None,
        fill: Callable[[ImageState], None] | None = None,
        load: Callable[[ImageState], None] | None = None,
        pixels: torch.Tensor | None = None,
    ) -> None:
        if features is None and (load is None or pixels is None):
            raise ValueError("An ImageState without features needs `load` and `pixels`.")
        self.size = (int(size[0]), int(size[1]))
        self.cache = {} if cache is None else cache
        self.key = key
        self._features = features
        self._fill = fill  # fills the detector's levels into `_features` (store states)
        self._load = load  # sets `_features` from the stored trunk (store states)
        self._pixels = pixels  # uint8 [3, S, S] model input, until the trunk is loaded

    def __repr__(self) -> str:
        return f"ImageState(size={self.size}, key={self.key})"

    @property
    def trunk(self) -> torch.Tensor:
        """The ViT's last map [1, h, w, C_vit], without running any neck."""
        if self._features is None:
            self._load(self)
        return self._features.vit

    @property
    def features(self) -> ImageFeatures:
        """The backbone output with the detector's FPN levels (computed now if still missing)."""
        if self._features is None:
            self._load(self)
        if self._fill is not None and not self._features.fpn:
            self._fill(self)
        return self._features


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
        store: EmbeddingStore | str | os.PathLike | None = None,
    ) -> None:
        self.device = pick_device(device)
        self.model = model.eval().to(self.device)
        self.precision = precision
        precision_dtype(precision)  # an unknown precision fails before the store is signed
        self.store = _open_store(store)
        if self.store is not None:  # signed before a bf16/fp16 cast changes the weights
            self.store.bind(model_signature(self.model, self.model.config, precision))
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
        config: str | None = None,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        token: str | None = None,
        store: EmbeddingStore | str | os.PathLike | None = None,
    ) -> ImagePredictor:
        """Load the released weights (hub id, default `facebook/sam3`, or a local file; the
        checkpoint picks the config unless `config` names one); `store`: an `EmbeddingStore` or
        a folder to keep image embeddings in."""
        from sam3_core.build import load_model

        model = load_model(checkpoint, config=config, token=token)
        return cls(model, device, precision, store=store)

    # ----------------------------------------------------------------- images
    @serialized
    def set_images(self, images: Sequence[ImageLike]) -> list[ImageState]:
        """Encode a batch of images with one backbone pass; returns one state per image.

        With a store, images found there skip the backbone, and the others are written to it.
        """
        arrays = [load_image(im) for im in images]
        resized = [preprocess(a, self.image_size) for a in arrays]
        if self.store is None:
            with autocast(self.device, self.precision):
                feats = self.model.detector_model.vision_encoder(self._normalize(resized))
            return [ImageState(a.shape[:2], feats.item(i)) for i, a in enumerate(arrays)]
        keys = [image_key(r) for r in resized]
        stored = {k for k in dict.fromkeys(keys) if self.store.lookup(k, (parts.VIT,))}
        missing = {k: r for k, r in zip(keys, resized) if k not in stored}
        computed = {
            key: ImageFeatures(
                self.store.put(key, {parts.VIT: vit})[parts.VIT].to(self.device), [], []
            )
            for key, vit in zip(missing, self._trunks(list(missing.values())))
        }
        return [  # stored trunks are read on first use (a click may need only its levels)
            ImageState(
                a.shape[:2],
                computed.get(k),
                key=k,
                fill=self._fill_detector_levels,
                load=self._load_trunk,
                pixels=None if k in computed else r,
            )
            for a, r, k in zip(arrays, resized, keys)
        ]

    def set_image(self, image: ImageLike) -> ImageState:
        """Encode one image (path, HxWxC array or PIL image) and cache its features."""
        return self.set_images([image])[0]

    # ----------------------------------------------------------------- store
    def image_key(self, image: ImageLike) -> str:
        """The store key of an image: a hash of the resized pixels the model sees."""
        return image_key(preprocess(load_image(image), self.image_size))

    def is_stored(self, image: ImageLike) -> bool:
        """Whether the store holds this image's embedding (False without a store)."""
        return self.store is not None and self.store.has(self.image_key(image))

    @serialized
    def precompute(
        self, images: Sequence[ImageLike], batch_size: int = 4, clicks: bool = True
    ) -> list[StoredImage]:
        """Put images' embeddings in the store without building states (`sam3 embed`).

        Only images not yet stored (or stored without the click levels, with `clicks`) run
        the backbone, `batch_size` per pass; `clicks` also stores the click head's levels
        when the model has that head. Stored entries are judged by their file's header and
        length (a damaged one is recomputed when read). One `StoredImage` per image, in order.
        """
        if self.store is None:
            raise StoreError(
                "precompute needs a store: ImagePredictor(model, store=EmbeddingStore(folder))."
            )
        loaded = self.model.loaded_parts
        clicks = clicks and (loaded is None or "tracker" in loaded)
        want = (parts.VIT, *parts.TRACKER) if clicks else (parts.VIT,)
        out: list[StoredImage] = []
        for start in range(0, len(images), batch_size):
            resized = [
                preprocess(load_image(im), self.image_size)
                for im in images[start : start + batch_size]
            ]
            keys = [image_key(r) for r in resized]
            found = {k for k in keys if self.store.parts(k).issuperset(want)}
            missing = {k: r for k, r in zip(keys, resized) if k not in found}
            trunks = self._trunks(list(missing.values()))
            levels = self._tracker_levels(trunks) if clicks else [{} for _ in trunks]
            for key, vit, extra in zip(missing, trunks, levels):
                self.store.put(key, {parts.VIT: vit, **extra})
            out += [StoredImage(k, self.store.nbytes(k) or 0, k in missing) for k in keys]
        return out

    def _normalize(self, resized: Sequence[torch.Tensor]) -> torch.Tensor:
        """uint8 [3, S, S] images -> the backbone's input batch on the device."""
        pixels = torch.stack(list(resized)).to(self.device)
        return (pixels.float() / 255.0 - 0.5) / 0.5

    def _trunks(self, resized: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One backbone pass -> each image's ViT map [1, h, w, C] (own memory)."""
        if not resized:
            return []
        with autocast(self.device, self.precision):
            vit = self.model.detector_model.vision_encoder.backbone(self._normalize(resized))
        return [vit[i : i + 1].clone() for i in range(len(resized))]

    def _tracker_levels(self, trunks: Sequence[torch.Tensor]) -> list[dict]:
        """The click head's neck levels of each trunk, as store entry parts."""
        if not trunks:
            return []
        vit = torch.cat(list(trunks)).permute(0, 3, 1, 2)
        with autocast(self.device, self.precision):
            feats = self.model.tracker_model.encode_image(self.model.tracker_neck, vit)
        levels = (*feats.high_res_feats, feats.image_embed)
        return [
            dict(zip(parts.TRACKER, (f[i : i + 1].clone() for f in levels)))
            for i in range(len(trunks))
        ]

    @serialized
    def _load_trunk(self, state: ImageState) -> None:
        """Give a store state its trunk: from the store, or recomputed (and stored again) from
        its pixels when the entry vanished or went bad since `set_image`."""
        if state._features is not None:
            return
        entry = self.store.read(state.key, (parts.VIT,))
        if entry is None:
            entry = self.store.put(state.key, {parts.VIT: self._trunks([state._pixels])[0]})
        state._features = ImageFeatures(entry[parts.VIT].to(self.device), [], [])
        state._pixels = None

    @serialized
    def _fill_detector_levels(self, state: ImageState) -> None:
        """Give a store state the detector's FPN levels: from memory, else the neck (kept)."""
        self._load_trunk(state)
        feats = state._features
        if feats.fpn:
            return
        neck = self.model.detector_model.vision_encoder.neck
        entry = self.store.memory.get(state.key) or {}
        got = parts.detector_levels(entry, neck, self.device)
        if got is None:
            with autocast(self.device, self.precision):
                got = neck(feats.vit.permute(0, 3, 1, 2), num_levels=3)
            self.store.put(state.key, parts.detector_parts(got[0]), persist=False)
        feats.fpn[:], feats.fpn_pos[:] = got

    # ----------------------------------------------------------------- prompts
    @property
    @serialized
    def cached_concepts(self) -> list[str]:
        """The concepts whose text features are cached, least recently used first."""
        return list(self._text_cache)

    @serialized
    def clear_text_cache(self) -> None:
        """Forget the cached text features (benchmarks: time the text encoder too)."""
        self._text_cache.clear()

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
        """The tracker head's view of the cached backbone output, computed once per image
        (read from the store when it holds them; written to it when computed)."""
        self.model.require_parts(*CLICK_PARTS, task="clicks, boxes and video")
        if "tracker" in state.cache:
            return state.cache["tracker"]
        tracker, neck = self.model.tracker_model, self.model.tracker_neck
        if self.store is not None and state.key is not None:
            entry = self.store.read(state.key, parts.TRACKER, parts.LAYOUTS)
            if entry is None:
                levels = self._tracker_levels([state.trunk])[0]
                entry = self.store.put(state.key, {parts.VIT: state.trunk, **levels})
            with autocast(self.device, self.precision):
                feats = parts.tracker_features(entry, tracker, neck, self.device)
            if not parts.in_layouts(entry):  # keep them as the decoder reads them
                self.store.put(state.key, parts.tracker_parts(feats), persist=False)
            state.cache["tracker"] = feats
        else:
            vit = state.trunk.permute(0, 3, 1, 2)
            with autocast(self.device, self.precision):
                state.cache["tracker"] = tracker.encode_image(neck, vit)
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


def _open_store(store: EmbeddingStore | str | os.PathLike | None) -> EmbeddingStore | None:
    """An EmbeddingStore as given, or one on a folder path."""
    if store is None or isinstance(store, EmbeddingStore):
        return store
    if isinstance(store, (str, os.PathLike)):
        return EmbeddingStore(store)
    raise StoreError(
        f"store must be an EmbeddingStore or a folder path; got {type(store).__name__}."
    )


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
