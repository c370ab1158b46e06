"""Video options of `sam3-labelstudio serve`: the tracker's thresholds, frame cap, keyframes."""

from __future__ import annotations

import argparse

from sam3_core.cli.args import parse_fraction, parse_number
from sam3_labelstudio.keyframes import DEFAULT_TOLERANCE


def add_video_options(s: argparse.ArgumentParser) -> None:
    """Video options: the tracker's thresholds, the frame cap, keyframe tolerance."""
    s.add_argument(
        "--new-track-threshold",
        type=parse_fraction,
        default=None,
        help="score a concept detection needs to start a video track (default: 0.7, the "
        "released model's, or --score-threshold when higher); lower both for a weak model",
    )
    s.add_argument(
        "--tracker-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other field of sam3_core's AssociationConfig, e.g. assoc_iou_thresh=0.2 "
        "(repeatable)",
    )
    s.add_argument(
        "--max-video-frames",
        type=parse_number(int, 1),
        default=300,
        help="frames tracked per video request, from the first prompted frame (default 300)",
    )
    s.add_argument(
        "--keyframe-tolerance",
        type=parse_number(float, 0.0),
        default=DEFAULT_TOLERANCE,
        help="pixels Label Studio's interpolation between keyframes may miss a tracked box by "
        f"(default {DEFAULT_TOLERANCE:g}; 0 = a keyframe on every frame)",
    )


def association(args: argparse.Namespace):
    """sam3_core's AssociationConfig from the video options (usage errors name the field)."""
    from dataclasses import fields

    from sam3_core.video.association import AssociationConfig

    kinds = {f.name: f.type for f in fields(AssociationConfig)}
    values = {"score_threshold_detection": args.score_threshold}
    new_track = args.new_track_threshold
    if new_track is None:
        new_track = max(args.score_threshold, AssociationConfig.new_det_thresh)
    values["new_det_thresh"] = new_track
    for option in args.tracker_option:
        key, sep, text = option.partition("=")
        key = key.strip()
        if not sep or key not in kinds:
            raise SystemExit(
                f"--tracker-option {option!r}: expected KEY=VALUE with KEY one of "
                f"{', '.join(sorted(kinds))}"
            )
        values[key] = tracker_value(key, text.strip(), str(kinds[key]))
    try:
        return AssociationConfig(**values)
    except ValueError as exc:
        raise SystemExit(f"--tracker-option: {exc}") from None


def tracker_value(key: str, text: str, kind: str):
    """`text` as the type of AssociationConfig field `key` (bool, int, float, or None)."""
    if "None" in kind and text.lower() == "none":
        return None
    try:
        if kind.startswith("bool"):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        return int(text) if kind.startswith("int") else float(text)
    except ValueError:
        raise SystemExit(f"--tracker-option {key}={text!r}: expected {kind}") from None
