"""Read a Label Studio labeling config: which tags SAM 3 fills, and the concept of each label."""

from __future__ import annotations

from dataclasses import dataclass, field

OUTPUT_TAGS = ("BrushLabels", "PolygonLabels", "RectangleLabels")
PROMPT_TAGS = ("KeyPointLabels", "RectangleLabels")
MEDIA_TAGS = ("Image", "Video")


class ConfigError(ValueError):
    """The labeling config has nothing SAM 3 can fill, or a request does not fit it."""


@dataclass(frozen=True)
class OutputTag:
    """A labels control SAM 3 writes regions into: its names, result type and label -> concept."""

    name: str
    to_name: str
    tag: str  # BrushLabels | PolygonLabels | RectangleLabels | VideoRectangle
    concepts: dict[str, str]  # label value -> concept text
    smart: bool = False  # smart="true" / smartOnly="true": serves clicks and boxes

    @property
    def result_type(self) -> str:
        """The `type` of the results this control produces (e.g. `brushlabels`)."""
        return self.tag.lower()


@dataclass(frozen=True)
class Schema:
    """What the backend needs from a labeling config."""

    media_tag: str  # Image | Video
    media_name: str  # the object tag's name (results' `to_name`)
    data_key: str  # the task data field holding the image / video URL
    outputs: list[OutputTag] = field(default_factory=list)
    prompt_names: list[str] = field(default_factory=list)  # TextArea names for typed concepts
    frame_rate: float = 24.0  # Video tags: frameRate, to turn frames into times

    def concepts(self, outputs: list[OutputTag] | None = None) -> list[str]:
        """The concept texts of `outputs` (default: all output tags), deduplicated, in order."""
        tags = self.outputs if outputs is None else outputs
        return list(dict.fromkeys(c for o in tags for c in o.concepts.values()))

    def batch_outputs(self) -> list[OutputTag]:
        """The tags Retrieve Predictions fills: those not marked smart (they serve clicks and
        boxes), or every tag when all are smart (a config made of smart tags only)."""
        plain = [o for o in self.outputs if not o.smart]
        return plain or list(self.outputs)

    def output_for(self, label: str | None) -> tuple[OutputTag, str]:
        """The output tag (brush first, then polygon, rectangle) holding `label`, and the label."""
        order = {t: i for i, t in enumerate(("BrushLabels", "PolygonLabels", "RectangleLabels"))}
        ranked = sorted(self.outputs, key=lambda o: order.get(o.tag, 9))
        if label is None:
            if not ranked or not ranked[0].concepts:
                raise ConfigError(
                    "No output labels: add a <Label> to a BrushLabels/PolygonLabels tag."
                )
            return ranked[0], next(iter(ranked[0].concepts))
        for out in ranked:
            if label in out.concepts:
                return out, label
        known = sorted({lab for o in self.outputs for lab in o.concepts})
        raise ConfigError(
            f"Unknown label {label!r}: it is in no BrushLabels/PolygonLabels/RectangleLabels tag "
            f"(known: {known}). Add <Label value={label!r}/> to one of them."
        )

    def label_for_text(self, text: str) -> tuple[OutputTag, str]:
        """The output label whose value or concept matches a typed prompt, else the first one."""
        key = text.strip().lower()
        for out in self.outputs:
            for label, concept in out.concepts.items():
                if key in (label.lower(), concept.lower()):
                    return self.output_for(label)
        return self.output_for(None)


def label_concept(attrs: dict[str, str]) -> str:
    """The concept of one <Label>: its `concept` attribute, else its value."""
    return (attrs.get("concept") or attrs["value"]).strip()


def parse_config(label_config: str) -> Schema:
    """Parse a labeling config (XML) with label-studio-sdk's `LabelInterface` into a `Schema`."""
    from label_studio_sdk.label_interface import LabelInterface

    if not isinstance(label_config, str):
        raise ConfigError(
            "label_config must be the labeling config as an XML string, not "
            f"{type(label_config).__name__}: check the client that called the backend."
        )
    if not label_config.strip():
        raise ConfigError("The request has no label_config: connect the backend to a project.")
    try:
        interface = LabelInterface(label_config)
    except Exception as exc:  # the SDK raises several types for bad XML
        raise ConfigError(f"Cannot parse the labeling config ({exc}): fix its XML.") from exc
    media = {o.name: o for o in interface.objects if o.tag in MEDIA_TAGS}
    outputs, prompts = [], []
    for control in interface.controls:
        targets = [n for n in control.to_name if n in media]
        if not targets:
            continue
        kind = media[targets[0]].tag
        if control.tag == "TextArea":
            prompts.append(control.name)
            continue
        wanted = OUTPUT_TAGS if kind == "Image" else ("VideoRectangle",)
        if control.tag not in wanted:
            continue
        labels = {n: label_concept(t.attr) for n, t in (control.labels_attrs or {}).items()}
        if not labels and control.tag == "VideoRectangle":
            labels = _video_labels(interface, targets[0])
        if not labels:
            raise ConfigError(no_labels_message(control.tag, control.name, targets[0]))
        smart = any(str(control.attr.get(k, "")).lower() == "true" for k in ("smart", "smartOnly"))
        outputs.append(OutputTag(control.name, targets[0], control.tag, labels, smart))
    if not outputs:
        raise ConfigError(
            "The labeling config has no BrushLabels, PolygonLabels or RectangleLabels on an Image "
            "(or VideoRectangle with Labels on a Video): add one, with a <Label> per concept."
        )
    obj = media[outputs[0].to_name]
    rate = obj.attr.get("frameRate") or obj.attr.get("framerate") or 24.0
    try:
        frame_rate = float(rate)
    except ValueError as exc:
        raise ConfigError(f"Video frameRate={rate!r} is not a number: write e.g. 25.") from exc
    return Schema(obj.tag, obj.name, obj.value_name, outputs, prompts, frame_rate)


def no_labels_message(tag: str, name: str, media: str) -> str:
    """The error for an output tag without labels: which tag, and the XML that fixes it."""
    if tag == "VideoRectangle":
        return (
            f'<VideoRectangle name="{name}"> has no labels: add <Labels name="labels" '
            f'toName="{media}"><Label value="..."/></Labels>, a <Label> per concept to track.'
        )
    return (
        f'<{tag} name="{name}"> has no <Label> children: add <Label value="..."/> inside it, one '
        "per concept SAM 3 should find (or remove the tag)."
    )


def _video_labels(interface, video_name: str) -> dict[str, str]:
    """Labels of a `<Labels>` tag bound to the video (VideoRectangle takes its label from it)."""
    for control in interface.controls:
        if control.tag == "Labels" and video_name in control.to_name:
            return {n: label_concept(t.attr) for n, t in (control.labels_attrs or {}).items()}
    return {}
