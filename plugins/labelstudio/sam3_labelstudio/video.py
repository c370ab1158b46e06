"""Video tasks: concepts tracked into `videorectangle` sequences; a drawn box tracked forward."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

from sam3_labelstudio.convert import PromptError, as_list, region_id
from sam3_labelstudio.images import ImageFetchError, local_storage_path
from sam3_labelstudio.keyframes import DEFAULT_TOLERANCE, track_sequence
from sam3_labelstudio.labeling import Schema

log = logging.getLogger("sam3_labelstudio")


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


@dataclass
class DrawnBox:
    """A videorectangle to track forward: from its last keyframe, earlier keyframes kept."""

    rid: str  # the region id (the answer reuses it, so Label Studio replaces the region)
    frame: int  # the last keyframe's frame, counted from 0
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 pixels on that frame
    labels: list[str]
    kept: list[dict]  # the region's keyframes before `frame`, as Label Studio sent them


def drawn_boxes(items: list[dict], width: int, height: int) -> list[DrawnBox]:
    """The videorectangles of a context that ask to be tracked: those whose last keyframe is
    enabled (a box just drawn, or one added after a track's end). A track whose last keyframe
    is disabled is finished (its lifespan closed) and is left as it is."""
    boxes = []
    for item in items or []:
        value = item.get("value")
        if item.get("type") != "videorectangle" or not isinstance(value, dict):
            continue
        seq = value.get("sequence")
        try:
            seq = sorted(seq, key=lambda k: int(k["frame"]))
            key = seq[-1]
            x, y = float(key["x"]) * width / 100, float(key["y"]) * height / 100
            w, h = float(key["width"]) * width / 100, float(key["height"]) * height / 100
            frame = int(key["frame"]) - 1
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise PromptError(
                "A drawn videorectangle needs a sequence whose last keyframe has numeric "
                f"frame, x, y, width and height: {seq}"
            ) from exc
        if key.get("enabled", True) is False:
            continue
        rid = item.get("id") or region_id()
        boxes.append(DrawnBox(rid, frame, (x, y, x + w, y + h), as_list(value.get("labels")),
                              seq[:-1]))  # fmt: skip
    return boxes


class VideoAnnotator:
    """Runs `sam3_core.video.predictor.VideoPredictor` on the backend's model, on its model thread."""

    def __init__(
        self,
        backend,
        max_frames: int = 300,
        association=None,
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        from sam3_core.video.predictor import VideoPredictor

        image = backend.predictor
        self.backend = backend
        self.predictor = VideoPredictor.from_image_predictor(image)
        self.max_frames = max_frames
        self.association = association  # sam3_core AssociationConfig; None: its defaults
        self.tolerance = tolerance  # px: keyframes where interpolation would miss by more

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
        """Prompt the session (boxes to track, else every label's concept) and collect tracks.
        With a context, only its open-ended boxes are tracked; none of them: no regions."""
        h, w = session.size
        n = min(session.num_frames, self.max_frames)
        fps = schema.frame_rate
        labels, ids = {}, {}
        drawn = drawn_boxes(items, w, h)
        if items and not drawn:
            return []
        if drawn:
            for k, d in enumerate(drawn, start=1):
                if not 0 <= d.frame < session.num_frames:
                    raise PromptError(
                        f"A box is drawn on frame {d.frame + 1}, but the video has "
                        f"{session.num_frames} frames (1..{session.num_frames}): draw it again."
                    )
                label = d.labels[0] if d.labels else next(iter(out.concepts), "object")
                session.add_prompt(d.frame, obj_id=k, boxes=np.asarray(d.box, np.float32))
                labels[k], ids[k] = label, d.rid
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
        kept = {}
        for k, d in enumerate(drawn, start=1):  # from its frame on; the user's box as drawn
            tracks[k] = {t: b for t, b in tracks.get(k, {}).items() if t > d.frame}
            tracks[k][d.frame] = np.asarray(d.box, np.float32)
            scores.setdefault(k, [1.0])
            kept[k] = d.kept
        return [
            videorectangle_result(
                kept.get(tid, []) + track_sequence(b, w, h, fps, self.tolerance), out,
                labels.get(tid, "object"), session.num_frames, fps, np.mean(scores[tid]),
                ids.get(tid),
            )
            for tid, b in tracks.items()
        ]  # fmt: skip


def attach_video(
    backend, max_frames: int = 300, association=None, tolerance: float = DEFAULT_TOLERANCE
) -> None:
    """Give `backend` video support (`sam3_core.video.predictor.VideoPredictor` on its model):
    at most `max_frames` frames tracked per request, `association` thresholds (sam3_core's
    AssociationConfig), keyframes within `tolerance` px of the tracked boxes."""
    backend.video = VideoAnnotator(backend, max_frames, association, tolerance)
