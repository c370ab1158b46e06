"""Video tasks: concepts tracked into `videorectangle` sequences; a drawn box tracked forward."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from sam3_labelstudio.convert import PromptError, as_list, region_id
from sam3_labelstudio.images import ImageFetchError, local_storage_path
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
        value = item.get("value")
        if item.get("type") != "videorectangle" or not isinstance(value, dict):
            continue
        try:
            key = value["sequence"][-1]
            x, y = float(key["x"]) * width / 100, float(key["y"]) * height / 100
            w, h = float(key["width"]) * width / 100, float(key["height"]) * height / 100
            frame = int(key["frame"]) - 1
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PromptError(
                "A drawn videorectangle needs a sequence whose last keyframe has numeric "
                f"frame, x, y, width and height: {value.get('sequence')}"
            ) from exc
        boxes.append((item.get("id") or region_id(), frame, (x, y, x + w, y + h),
                      as_list(value.get("labels"))))  # fmt: skip
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

    def predict(self, task: dict, schema: Schema, items: list[dict]) -> dict:
        """One task: concepts of every label (no `items`) or the drawn boxes, tracked forward."""
        from sam3_labelstudio.backend import BackendError, task_url
        from sam3_labelstudio.convert import prediction

        url = task_url(task, schema)
        try:
            results = self._track_url(url, schema, items)
        except (ImageFetchError, BackendError) as exc:
            raise BackendError(f"Task {task.get('id')}: {exc}", exc.status) from exc
        return prediction(results, self.backend.model_version)

    def _track_url(self, url: str, schema: Schema, items: list[dict]) -> list[dict]:
        """Track the video at `url`: a local-storage file in place, else downloaded to a temp."""
        local = local_storage_path(url, self.backend.fetcher.local_root)
        if local is not None:  # no copy, no download limit
            return self.backend.run(self._track, local, url, schema, items)
        data = self.backend.fetcher.fetch_bytes(url)
        query = parse_qs(urlparse(url).query).get("d") or [urlparse(url).path]
        fd, path = tempfile.mkstemp(suffix=Path(query[-1]).suffix or ".mp4")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return self.backend.run(self._track, path, url, schema, items)
        finally:
            os.unlink(path)

    def _track(self, path: str, url: str, schema: Schema, items: list[dict]) -> list[dict]:
        """Open the video in a session, track, and turn tracks into videorectangles."""
        from sam3_labelstudio.backend import BackendError

        try:
            session = self.predictor.start(path, association=self.association)
        except Exception as exc:
            raise BackendError(f"Cannot read the video {url}: {exc}", 422) from exc
        try:
            return self._run(session, schema, schema.outputs[0], items)
        except ValueError as exc:  # convert/sam3_core PromptError: a bad box, frame out of range
            raise BackendError(f"Bad video prompt: {exc}", 422) from exc
        finally:
            session.frames.close()

    def _run(self, session, schema: Schema, out, items: list[dict]) -> list[dict]:
        """Prompt the session (drawn boxes, else every label's concept) and collect tracks."""
        h, w = session.size
        n = min(session.num_frames, self.max_frames)
        fps = schema.frame_rate
        labels, ids = {}, {}
        drawn = drawn_boxes(items, w, h)
        if drawn:
            for k, (rid, frame, box, names) in enumerate(drawn, start=1):
                if not 0 <= frame < session.num_frames:
                    raise PromptError(
                        f"A box is drawn on frame {frame + 1}, but the video has "
                        f"{session.num_frames} frames (1..{session.num_frames}): draw it again."
                    )
                label = names[0] if names else next(iter(out.concepts), "object")
                session.add_prompt(frame, obj_id=k, boxes=np.asarray(box, np.float32))
                labels[k], ids[k] = label, rid
        else:
            concepts = list(dict.fromkeys(out.concepts.values()))
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
    """Give `backend` video support (`sam3_core.video.session.VideoPredictor` on its model)."""
    backend.video = VideoAnnotator(backend, max_frames)
