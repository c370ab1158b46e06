"""Pure conversions between Label Studio JSON (percent coordinates) and pixel-space arrays."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import numpy as np

from sam3_core.formats.labelstudio_rle import mask2rle
from sam3_labelstudio.labeling import OutputTag


class PromptError(ValueError):
    """An interactive request whose clicks, boxes or text cannot be used."""


@dataclass
class Prompt:
    """The user's interactive input, in pixels of the original image."""

    points: list[tuple[float, float]] = field(default_factory=list)
    point_labels: list[int] = field(default_factory=list)  # 1 positive, 0 negative
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1
    label: str | None = None  # the label chosen for the click / box
    text: str | None = None  # a typed concept (TextArea)

    @property
    def is_geometric(self) -> bool:
        """True when there are clicks or a box (one object to segment)."""
        return bool(self.points) or self.box is not None


def region_id() -> str:
    """A short random region id, as the Label Studio frontend makes them."""
    return uuid.uuid4().hex[:10]


def parse_context(items: list[dict], width: int, height: int) -> Prompt:
    """Turn `params.context.result` (keypoints, rectangles, text, in percent) into a `Prompt`.

    Negative clicks are keypoints with `is_positive: false` (Alt-click in the Label Studio UI).
    """
    prompt = Prompt()
    for item in items or []:
        kind = item.get("type", "") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict):
            if kind in ("textarea", "keypointlabels", "rectanglelabels"):
                raise PromptError(f"A {kind} item has no 'value' object: {item}")
            continue
        if kind == "textarea":
            text = as_list(value.get("text"))
            prompt.text = " ".join(t for t in text if isinstance(t, str)).strip() or prompt.text
            continue
        if kind not in ("keypointlabels", "rectanglelabels"):
            continue
        try:
            x = float(value["x"]) * width / 100.0
            y = float(value["y"]) * height / 100.0
            w = float(value.get("width", 0)) * width / 100.0
            h = float(value.get("height", 0)) * height / 100.0
        except (KeyError, TypeError, ValueError) as exc:
            raise PromptError(
                f"A {kind} item needs numeric value.x, value.y (and width, height): {value}"
            ) from exc
        labels = [lab for lab in as_list(value.get(kind)) if isinstance(lab, str)]
        prompt.label = labels[0] if labels else prompt.label
        if kind == "keypointlabels":
            prompt.points.append((x, y))
            prompt.point_labels.append(1 if item.get("is_positive", True) else 0)
        else:
            if w <= 0 or h <= 0:
                raise PromptError(
                    f"A rectangle prompt has no area ({w:g}x{h:g} px): draw it again."
                )
            prompt.box = (x, y, x + w, y + h)
    return prompt


def as_list(value) -> list:
    """A JSON field that should be a list: a lone value becomes a one-item list, None []."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _base(out: OutputTag, label: str, width: int, height: int, score: float) -> dict:
    """The fields every region result shares."""
    return {
        "id": region_id(),
        "from_name": out.name,
        "to_name": out.to_name,
        "type": out.result_type,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "score": round(float(score), 4),
        "value": {out.result_type: [label]},
    }


def brush_result(mask: np.ndarray, out: OutputTag, label: str, score: float) -> dict:
    """A brushlabels region: the mask [H, W] as Label Studio RLE (the SDK's bytes, in numpy)."""
    h, w = mask.shape
    res = _base(out, label, w, h, score)
    res["value"].update(format="rle", rle=mask2rle(mask.astype(np.uint8) * 255))
    return res


def rectangle_result(
    box, width: int, height: int, out: OutputTag, label: str, score: float
) -> dict:
    """A rectanglelabels region from an x0, y0, x1, y1 pixel box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    res = _base(out, label, width, height, score)
    res["value"].update(
        x=100.0 * x0 / width,
        y=100.0 * y0 / height,
        width=100.0 * (x1 - x0) / width,
        height=100.0 * (y1 - y0) / height,
        rotation=0,
    )
    return res


def mask_to_polygon(mask: np.ndarray, tolerance: float = 1.0) -> np.ndarray:
    """The largest outer contour of a binary mask, simplified: float [K, 2] pixel (x, y)."""
    import cv2

    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return np.zeros((0, 2), np.float32)
    largest = max(contours, key=cv2.contourArea)
    if tolerance > 0 and len(largest) > 3:
        largest = cv2.approxPolyDP(largest, tolerance, True)
    return largest.reshape(-1, 2).astype(np.float32)


def polygon_result(mask: np.ndarray, out: OutputTag, label: str, score: float) -> dict | None:
    """A polygonlabels region from a mask's contour, or None when it has under 3 vertices."""
    h, w = mask.shape
    poly = mask_to_polygon(mask)
    if len(poly) < 3:
        return None
    res = _base(out, label, w, h, score)
    pct = poly * np.array([100.0 / w, 100.0 / h], np.float32)
    res["value"].update(
        points=[[round(float(x), 3), round(float(y), 3)] for x, y in pct], closed=True
    )
    return res


def instance_results(masks, boxes, scores, out: OutputTag, label: str) -> list[dict]:
    """Regions for one output tag from instances (bool masks [N, H, W], xyxy boxes, scores)."""
    results = []
    for mask, box, score in zip(masks, boxes, scores):
        if not mask.any():
            continue
        if out.tag == "BrushLabels":
            results.append(brush_result(mask, out, label, score))
        elif out.tag == "PolygonLabels":
            poly = polygon_result(mask, out, label, score)
            results.extend([poly] if poly else [])
        else:
            h, w = mask.shape
            results.append(rectangle_result(box, w, h, out, label, score))
    return results


def outputs_results(
    outputs: list[OutputTag],
    concepts: list[str],
    labels: np.ndarray,
    masks: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
) -> list[dict]:
    """Regions of every label of `outputs` from instances of several concepts (`labels` [N]:
    each instance's index in `concepts`; masks [N, H, W] bool, boxes [N, 4] xyxy, scores [N]):
    a label gets the instances of its concept. The one mapping for /predict and preannotate."""
    labels = np.asarray(labels)
    results: list[dict] = []
    for out in outputs:
        for label, concept in out.concepts.items():
            keep = labels == concepts.index(concept)
            if keep.any():
                results += instance_results(masks[keep], boxes[keep], scores[keep], out, label)
    return results


def prediction(results: list[dict], model_version: str) -> dict:
    """One task's prediction: its regions, an overall score (mean region score) and the version."""
    scores = [r["score"] for r in results if "score" in r]
    score = float(np.mean(scores)) if scores else 0.0
    return {"result": results, "score": round(score, 4), "model_version": model_version}
