"""Tracks as Label Studio videorectangle keyframes: only where the motion changes.

Label Studio draws a video rectangle between two keyframes by linear interpolation of x, y,
width and height (`interpolateProp` in its editor), and writes `time = frame / frameRate` with
frames counted from 1. A keyframe is kept only where interpolating from the previous one would
miss a tracked box by more than `tolerance` pixels on any side.
"""

from __future__ import annotations

import numpy as np

DEFAULT_TOLERANCE = 2.0  # pixels: --keyframe-tolerance


def sequence_item(frame: int, box, width: int, height: int, fps: float, enabled: bool) -> dict:
    """One keyframe: `frame` counted from 0 here, from 1 in Label Studio (and in `time`)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return {
        "frame": frame + 1,
        "x": 100.0 * x0 / width,
        "y": 100.0 * y0 / height,
        "width": 100.0 * (x1 - x0) / width,
        "height": 100.0 * (y1 - y0) / height,
        "rotation": 0,
        "enabled": enabled,
        "time": (frame + 1) / fps,
    }


def spans(frames: list[int]) -> list[list[int]]:
    """Sorted frame numbers split into runs of consecutive frames."""
    runs: list[list[int]] = []
    for t in sorted(frames):
        if runs and t == runs[-1][-1] + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    return runs


def fits(boxes: np.ndarray, start: int, end: int, tolerance: float) -> bool:
    """Whether linear interpolation from row `start` to row `end` of `boxes` [N, 4] (x, y, w, h
    pixels) stays within `tolerance` pixels of every row between them."""
    if end - start < 2:
        return True
    r = (np.arange(start + 1, end) - start)[:, None] / (end - start)
    line = boxes[start] + (boxes[end] - boxes[start]) * r
    return bool(np.abs(line - boxes[start + 1 : end]).max() <= tolerance)


def key_rows(boxes: np.ndarray, tolerance: float) -> list[int]:
    """Rows of `boxes` [N, 4] to keep as keyframes (first and last always): greedy, each
    segment as long as interpolation stays within `tolerance` px. tolerance <= 0: every row."""
    n = len(boxes)
    if tolerance <= 0 or n <= 2:
        return list(range(n))
    keys, start = [0], 0
    for end in range(2, n):
        if not fits(boxes, start, end, tolerance):
            start = end - 1
            keys.append(start)
    keys.append(n - 1)
    return keys


def track_sequence(
    boxes: dict[int, np.ndarray],
    width: int,
    height: int,
    fps: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> list[dict]:
    """Keyframes of a track seen on `boxes` {frame from 0: xyxy px}: per run of consecutive
    frames, those where the motion changes; the run's last keyframe is disabled (a gap)."""
    seq = []
    for run in spans(list(boxes)):
        xyxy = np.asarray([boxes[t] for t in run], np.float64).reshape(-1, 4)
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
        rows = key_rows(xywh, tolerance)
        for row in rows:
            seq.append(sequence_item(run[row], xyxy[row], width, height, fps, row != rows[-1]))
    return seq
