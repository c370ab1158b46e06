"""Video tasks: concepts tracked into `videorectangle` sequences; a drawn box tracked forward."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from sam3_labelstudio.convert import region_id
from sam3_labelstudio.labeling import Schema

log = logging.getLogger("sam3_labelstudio")


def sequence_item(frame: int, box, width: int, height: int, fps: float, enabled: bool) -> dict:
    """One keyframe of a videorectangle: `frame` counted from 0 here, from 1 in Label Studio."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return {
        "frame": frame + 1,
        "x": 100.0 * x0 / width,
        "y": 100.0 * y0 / height,
        "width": 100.0 * (x1 - x0) / width,
        "height": 100.0 * (y1 - y0) / height,
        "rotation": 0,
        "enabled": enabled,
        "time": frame / fps,
    }


def track_sequence(boxes: dict[int, np.ndarray], width: int, height: int, fps: float) -> list:
    """Keyframes for a track seen on `boxes` {frame: xyxy}: a gap or the end closes a span."""
    frames = sorted(boxes)
    seq = []
    for i, t in enumerate(frames):
        last = i == len(frames) - 1 or frames[i + 1] != t + 1
        seq.append(sequence_item(t, boxes[t], width, height, fps, enabled=not last))
    return seq


def videorectangle_result(
    seq: list, out, label: str, frames: int, fps: float, score: float, rid: str | None = None
) -> dict:
    """A videorectangle region (`out` is the VideoRectangle tag, `label` from its <Labels>)."""
    return {
        "id": rid or region_id(),
        "from_name": out.name,
        "to_name": out.to_name,
        "type": "videorectangle",
        "score": round(float(score), 4),
        "value": {
            "sequence": seq,
            "labels": [label],
            "framesCount": frames,
            "duration": frames / fps,
        },
    }


def drawn_boxes(items: list[dict], width: int, height: int) -> list[tuple[str, int, tuple, list]]:
    """User-drawn videorectangles in a context: (region id, frame from 0, xyxy px, labels)."""
    boxes = []
    for item in items or []:
        value = item.get("value") or {}
        if item.get("type") != "videorectangle" or not value.get("sequence"):
            continue
        key = value["sequence"][-1]
        x, y = key["x"] * width / 100, key["y"] * height / 100
        box = (x, y, x + key["width"] * width / 100, y + key["height"] * height / 100)
        boxes.append((item.get("id") or region_id(), int(key["frame"]) - 1, box,
                      value.get("labels") or []))  # fmt: skip
    return boxes


class VideoAnnotator:
    """Runs `sam3_core.video.session.VideoPredictor` on the backend's model, on its model thread."""

    def __init__(self, backend, max_frames: int = 300) -> None:
        from sam3_core.video.session import VideoPredictor

        image = backend.predictor
        self.backend = backend
        self.predictor = VideoPredictor(image.model, image.device, image.precision)
        self.max_frames = max_frames
        self.association = None  # sam3_core.video.association.AssociationConfig; None: its defaults

    def predict(self, task: dict, schema: Schema, context: dict) -> dict:
        """One task: concepts of every label (no context) or the drawn boxes, tracked forward."""
        from sam3_labelstudio.backend import BackendError
        from sam3_labelstudio.convert import prediction

        url = (task.get("data") or {}).get(schema.data_key)
        if not isinstance(url, str) or not url:
            raise BackendError(f"Task {task.get('id')} has no data.{schema.data_key}.", 422)
        try:
            data = self.backend.fetcher.fetch_bytes(url)
        except Exception as exc:
            raise BackendError(f"Task {task.get('id')}: {exc}", 502) from exc
        query = parse_qs(urlparse(url).query).get("d") or [urlparse(url).path]
        suffix = Path(query[-1]).suffix or ".mp4"
        out = schema.outputs[0]
        fd, path = tempfile.mkstemp(suffix=suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            items = context.get("result") or []
            results = self.backend.run(self._track, path, schema, out, items)
        finally:
            os.unlink(path)
        return prediction(results, self.backend.model_version)

    def _track(self, path: str, schema: Schema, out, items: list[dict]) -> list[dict]:
        """Open the video in a session, track, and turn tracks into videorectangles."""
        from sam3_labelstudio.backend import BackendError

        try:
            session = self.predictor.start(path, association=self.association)
        except Exception as exc:
            raise BackendError(f"Cannot read the video: {exc}", 422) from exc
        try:
            return self._run(session, schema, out, items)
        finally:
            session.frames.close()

    def _run(self, session, schema: Schema, out, items: list[dict]) -> list[dict]:
        """Prompt the session (drawn boxes, else every label's concept) and collect tracks."""
        from sam3_labelstudio.backend import BackendError

        h, w = session.size
        n = min(session.num_frames, self.max_frames)
        fps = schema.frame_rate
        labels, ids = {}, {}
        drawn = drawn_boxes(items, w, h)
        if drawn:
            for k, (rid, frame, box, names) in enumerate(drawn, start=1):
                label = names[0] if names else next(iter(out.concepts), "object")
                session.add_prompt(frame, obj_id=k, boxes=np.asarray(box, np.float32))
                labels[k], ids[k] = label, rid
        else:
            concepts = list(dict.fromkeys(out.concepts.values()))
            if not concepts:
                raise BackendError("Add <Labels> with a <Label> per concept for the video.", 422)
            session.add_concept(0, concepts=concepts)
            by_concept = {c: lab for lab, c in out.concepts.items()}
        tracks: dict[int, dict[int, np.ndarray]] = {}
        scores: dict[int, list[float]] = {}
        for t, inst in session.propagate(max_frames=n):
            for i, tid in enumerate(inst.track_ids if inst.track_ids is not None else []):
                if not inst.masks[i].any():
                    continue
                tid = int(tid)
                tracks.setdefault(tid, {})[t] = inst.boxes[i]
                scores.setdefault(tid, []).append(float(inst.scores[i]))
                if not drawn and tid not in labels:
                    labels[tid] = by_concept.get(inst.label_names[int(inst.labels[i])], "object")
        for k, (_, frame, box, _) in enumerate(drawn, start=1):  # the user's box stays as drawn
            tracks.setdefault(k, {})[frame] = np.asarray(box, np.float32)
            scores.setdefault(k, [1.0])
        return [
            videorectangle_result(track_sequence(b, w, h, fps), out, labels.get(tid, "object"),
                                  session.num_frames, fps, np.mean(scores[tid]), ids.get(tid))
            for tid, b in tracks.items()
        ]  # fmt: skip


def attach_video(backend, max_frames: int = 300) -> None:
    """Give `backend` video support when sam3_core has a VideoPredictor (ImportError if not)."""
    backend.video = VideoAnnotator(backend, max_frames)
