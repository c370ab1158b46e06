"""Pure conversions between FiftyOne labels and sam3_core prompts/results (no model, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

import fiftyone.core.labels as fol
from sam3_core.large.sparse import tight_crop
from sam3_core.results import Concept, Exemplar, Instances

Box = tuple[float, float, float, float]


def relative_to_pixel_box(bounding_box: Sequence[float], width: int, height: int) -> Box:
    """FiftyOne's relative [x, y, w, h] -> (x0, y0, x1, y1) in pixels."""
    x, y, w, h = (float(v) for v in bounding_box)
    return (x * width, y * height, (x + w) * width, (y + h) * height)


def detections_to_boxes(
    detections: fol.Detections | Iterable[fol.Detection] | None, width: int, height: int
) -> list[tuple[str | None, Box]]:
    """(label, pixel xyxy box) per detection; detections without a box or with an empty one are
    dropped."""
    if detections is None:
        return []
    items = detections.detections if isinstance(detections, fol.Detections) else detections
    out = []
    for det in items:
        if det.bounding_box is None or len(det.bounding_box) != 4:
            continue
        box = relative_to_pixel_box(det.bounding_box, width, height)
        if box[2] > box[0] and box[3] > box[1]:
            out.append((det.label, box))
    return out


def split_exemplars(
    detections: fol.Detections | None,
    width: int,
    height: int,
    negative_label: str | None = None,
    negative_tag: str | None = None,
    only_ids: Iterable[str] | None = None,
) -> tuple[list[tuple[str | None, Box]], list[Box]]:
    """Positive (label, box) and negative boxes, in pixels, from one Detections label.

    A detection is negative if its label is `negative_label` or it carries the label tag
    `negative_tag`; with `only_ids`, positives are restricted to those label ids (labels selected
    in the App) while every negative still counts.
    """
    ids = None if only_ids is None else set(only_ids)
    positives, negatives = [], []
    for det in [] if detections is None else detections.detections:
        boxes = detections_to_boxes([det], width, height)
        if not boxes:
            continue
        negative = (negative_label is not None and det.label == negative_label) or (
            negative_tag is not None and negative_tag in (det.tags or [])
        )
        if negative:
            negatives.append(boxes[0][1])
        elif ids is None or det.id in ids:
            positives.append(boxes[0])
    return positives, negatives


def build_concepts(
    classes: Sequence[str] | None,
    positives: Sequence[tuple[str | None, Box]] = (),
    negatives: Sequence[Box] = (),
    join_all: bool = False,
    default_name: str = "object",
) -> tuple[list[Concept], list[str]]:
    """Concepts for one image and the output label of each.

    Each class is a text concept; a positive box labelled like a class (or, with `join_all`, every
    positive box) joins it as an exemplar. Other positive boxes prompt their own label as an
    image-only concept (no text). Negative boxes join every concept.
    """
    negs = tuple(Exemplar(tuple(b), False) for b in negatives)
    classes = list(dict.fromkeys(c.strip() for c in classes or () if c and c.strip()))
    groups: dict[str, list[Exemplar]] = {c: [] for c in classes}
    for label, box in positives:
        targets = classes if join_all and classes else [label or default_name]
        for name in targets:
            groups.setdefault(name, []).append(Exemplar(tuple(box), True))
    concepts, names = [], []
    for name, exemplars in groups.items():
        text = name if name in classes else None
        concepts.append(Concept(text, tuple(exemplars) + negs))
        names.append(name)
    return concepts, names


def keypoints_to_clicks(
    keypoints: fol.Keypoints | None, width: int, height: int
) -> list[tuple[np.ndarray, np.ndarray, str | None]]:
    """One object per Keypoint: (points float32 [P, 2] pixels, labels int64 [P], label).

    Point labels come from a `sam_labels` / `sam2_labels` attribute (1 positive, 0 negative) as
    in FiftyOne's SAM integrations, else every point is positive; NaN points are dropped.
    """
    if keypoints is None:
        return []
    out = []
    for kp in keypoints.keypoints:
        pts = np.asarray(kp.points or [], np.float64).reshape(-1, 2)
        labels = None
        for attr in ("sam_labels", "sam2_labels"):
            if kp.has_field(attr) and kp[attr] is not None:
                labels = np.asarray(kp[attr], np.int64)
                break
        if labels is None:
            labels = np.ones(len(pts), np.int64)
        if len(labels) != len(pts):
            raise ValueError(
                f"Keypoint '{kp.label}' has {len(pts)} points but {len(labels)} sam_labels: "
                "give one label (1 positive, 0 negative) per point."
            )
        keep = ~np.isnan(pts).any(axis=1)
        if keep.any():
            pix = pts[keep] * np.array([width, height])
            out.append((pix.astype(np.float32), labels[keep], kp.label))
    return out


def instances_to_detections(
    instances: Instances,
    output: str = "masks",
    label_names: Sequence[str] | None = None,
) -> fol.Detections:
    """sam3_core `Instances` -> `fo.Detections` (relative boxes; masks cropped to the box).

    output: "masks" (box = the mask's extent, instances with an empty mask are dropped) or
    "boxes" (the predicted boxes, clipped to the image). label_names: the label of each concept
    (defaults to `instances.label_names`). Track ids, when present, go to `index`.
    """
    check_output(output)
    names = list(label_names) if label_names is not None else list(instances.label_names)
    dets = []
    for i in range(len(instances)):
        det = make_detection(
            names[int(instances.labels[i])],
            float(instances.scores[i]),
            instances.boxes[i],
            instances.masks[i] if output == "masks" else None,
            instances.image_size,
            None if instances.track_ids is None else int(instances.track_ids[i]),
        )
        if det is not None:
            dets.append(det)
    return fol.Detections(detections=dets)


def record_to_detections(record: dict, output: str = "masks") -> fol.Detections:
    """A dataset-job record (sam3_core.jobs: instances with concept, score, xyxy box, RLE mask)
    -> `fo.Detections`, with the same rules as `instances_to_detections`."""
    from sam3_core.postprocess import rle_to_mask

    check_output(output)
    size = (int(record["height"]), int(record["width"]))
    dets = []
    for inst in record["instances"]:
        mask = rle_to_mask(inst["segmentation"]) if output == "masks" else None
        det = make_detection(inst["concept"], float(inst["score"]), inst["box"], mask, size)
        if det is not None:
            dets.append(det)
    return fol.Detections(detections=dets)


def check_output(output: str) -> None:
    """Raise unless `output` is "masks" or "boxes"."""
    if output not in ("masks", "boxes"):
        raise ValueError(f"output must be 'masks' or 'boxes', got {output!r}")


def make_detection(
    label: str,
    score: float,
    box: Sequence[float],
    mask: np.ndarray | None,
    image_size: tuple[int, int],
    index: int | None = None,
) -> fol.Detection | None:
    """One `fo.Detection`: with a bool [H, W] `mask`, cropped to its extent (None if empty);
    without, the pixel xyxy `box` clipped to the image (None if empty)."""
    h, w = image_size
    attrs = {"label": label, "confidence": score}
    if index is not None:
        attrs["index"] = index
    if mask is not None:
        cropped = tight_crop(mask)
        if cropped is None:
            return None
        box, attrs["mask"] = cropped
    else:
        box = np.clip(np.asarray(box, np.float64), 0, [w, h, w, h])
        if box[2] <= box[0] or box[3] <= box[1]:
            return None
    attrs["bounding_box"] = pixel_to_relative_box(box, w, h)
    return fol.Detection(**attrs)


def pixel_to_relative_box(box: Sequence[float], width: int, height: int) -> list[float]:
    """(x0, y0, x1, y1) in pixels -> FiftyOne's relative [x, y, w, h]."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return [x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height]
