"""A FiftyOne model (`dataset.apply_model`) backed by sam3_core, with a cached predictor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import fiftyone.core.config as foc
import fiftyone.core.labels as fol
import fiftyone.core.models as fom

from . import convert
from .predictors import DEFAULT_CONFIG, cached_predictor

OUTPUTS = ("masks", "boxes")


class Sam3ModelConfig(foc.Config):
    """Settings of `Sam3Model`; every key is optional.

    checkpoint: local .safetensors/.pt or hub id (None: `facebook/sam3`); config_name: a sam3_core
    preset, only for a checkpoint that does not say which model it holds; device/precision: as
    in sam3_core; classes: concepts (noun phrases); prompt_field: a Detections field (positive
    exemplar boxes) or Keypoints field (clicks); confidence_thresh, mask_thresh: score and mask
    thresholds; output: "masks" or "boxes". Exemplar options:
    negative_label / negative_tag mark prompt boxes as negatives, exemplar_ids restricts the
    positives to those label ids, join_exemplars makes every positive box join every class.
    store: an embedding store folder (see `precompute_embeddings`) read before the backbone.
    """

    def __init__(self, d: dict | None = None) -> None:
        d = dict(d or {})
        self.checkpoint = self.parse_string(d, "checkpoint", default=None)
        self.config_name = self.parse_string(d, "config_name", default=DEFAULT_CONFIG)
        self.device = self.parse_string(d, "device", default=None)
        self.precision = self.parse_string(d, "precision", default="fp32")
        classes = d.get("classes")
        self.classes = [classes] if isinstance(classes, str) else list(classes or [])
        self.prompt_field = self.parse_string(d, "prompt_field", default=None)
        self.confidence_thresh = self.parse_number(d, "confidence_thresh", default=None)
        self.mask_thresh = self.parse_number(d, "mask_thresh", default=0.5)
        self.output = self.parse_categorical(d, "output", OUTPUTS, default="masks")
        self.negative_label = self.parse_string(d, "negative_label", default=None)
        self.negative_tag = self.parse_string(d, "negative_tag", default=None)
        ids = d.get("exemplar_ids")
        self.exemplar_ids = None if ids is None else [str(i) for i in ids]
        self.join_exemplars = self.parse_bool(d, "join_exemplars", default=False)
        self.store = self.parse_string(d, "store", default=None)


class Sam3Model(fom.SamplesMixin, fom.Model):
    """SAM 3 concept segmentation for `apply_model`: concepts, exemplar boxes or clicks ->
    Detections.

    Prompts per image: `classes` (text), plus the sample's `prompt_field` if given (in the config
    or as `apply_model(..., prompt_field="gt")`): Detections are positive exemplars (a box labelled
    like a class joins it, other boxes prompt their own label), Keypoints are clicks (one object
    per Keypoint, labelled like it).
    """

    def __init__(self, config: Sam3ModelConfig | dict | None = None) -> None:
        fom.SamplesMixin.__init__(self)
        self.config = config if isinstance(config, Sam3ModelConfig) else Sam3ModelConfig(config)
        self._preprocess = True

    @property
    def media_type(self) -> str:
        return "image"

    @property
    def ragged_batches(self) -> bool:
        return False  # predict_all takes lists of images of any size

    @property
    def transforms(self) -> None:
        return None

    @property
    def preprocess(self) -> bool:
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value: bool) -> None:
        self._preprocess = value

    @property
    def needs_fields(self) -> dict:
        """Sample fields to load: `prompt_field` from the config unless given to apply_model."""
        fields = dict(self._fields)
        if self.config.prompt_field and "prompt_field" not in fields:
            fields["prompt_field"] = self.config.prompt_field
        return fields

    @needs_fields.setter
    def needs_fields(self, fields: dict) -> None:
        self._fields = dict(fields or {})

    @property
    def predictor(self):
        """The cached sam3_core `ImagePredictor` (loaded on first use, shared across runs)."""
        c = self.config
        return cached_predictor(
            "image", c.checkpoint, c.config_name, c.device, c.precision, c.store
        )

    def predict(self, arg: Any, sample: Any = None) -> fol.Detections:
        """Segment one image (uint8 HxWxC array, path or PIL image)."""
        return self.predict_all([arg], None if sample is None else [sample])[0]

    def predict_all(self, args: Sequence[Any], samples: Sequence[Any] | None = None) -> list:
        """Segment a batch of images: one backbone pass, then each image's prompts."""
        states = self.predictor.set_images(list(args))
        samples = list(samples) if samples is not None else [None] * len(states)
        return [self._segment(state, sample) for state, sample in zip(states, samples)]

    def prompt_label(self, sample: Any) -> Any:
        """The sample's prompt label (Detections/Keypoints) or None."""
        field = self.needs_fields.get("prompt_field")
        if not field or sample is None:
            return None
        return sample.get_field(field)

    def _segment(self, state, sample: Any) -> fol.Detections:
        c = self.config
        h, w = state.size
        prompt = self.prompt_label(sample)
        thresh = 0.5 if c.confidence_thresh is None else float(c.confidence_thresh)
        if isinstance(prompt, fol.Keypoints):
            return self._segment_clicks(state, convert.keypoints_to_clicks(prompt, w, h))
        if prompt is not None and not isinstance(prompt, fol.Detections):
            raise ValueError(
                f"prompt_field holds {type(prompt).__name__}: give a Detections field (exemplar "
                "boxes) or a Keypoints field (clicks)."
            )
        positives, negatives = convert.split_exemplars(
            prompt, w, h, c.negative_label, c.negative_tag, c.exemplar_ids
        )
        if not c.classes and not positives and not self.needs_fields.get("prompt_field"):
            raise ValueError(
                "Sam3Model has no prompt: set classes=['a noun phrase', ...] and/or "
                "prompt_field='<a Detections or Keypoints field>'."
            )
        concepts, names = convert.build_concepts(c.classes, positives, negatives, c.join_exemplars)
        if not concepts:
            return fol.Detections()  # no exemplar on this sample and no text concept
        inst = self.predictor.predict(
            state, concepts, score_threshold=thresh, mask_threshold=float(c.mask_thresh)
        )
        return convert.instances_to_detections(inst, c.output, names)

    def _segment_clicks(self, state, clicks: list) -> fol.Detections:
        dets = []
        for points, labels, name in clicks:
            inst = self.predictor.predict(state, points=points, point_labels=labels)
            out = convert.instances_to_detections(inst, self.config.output, [name or "object"])
            dets.extend(out.detections)
        return fol.Detections(detections=dets)
