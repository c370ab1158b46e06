"""`sam3 track`: track clicked objects or concepts through a video into per-frame JSON + mp4."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam3_core.cli.args import (
    add_model_args,
    parse_box,
    parse_count,
    parse_exemplar,
    parse_fraction,
    parse_point,
    parse_positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `track` to the `sam3` subcommands."""
    trk = sub.add_parser(
        "track", help="track clicked objects or concepts through a video -> per-frame JSON + mp4"
    )
    trk.add_argument("video", help="video file, folder of frames or TIFF stack")
    trk.add_argument("--concept", action="append", default=[], help="a noun phrase; repeat")
    trk.add_argument(
        "--exemplar",
        action="append",
        default=[],
        type=parse_exemplar,
        help="x0,y0,x1,y1[,neg] example box on --frame, in pixels; repeat",
    )
    trk.add_argument(
        "--point",
        action="append",
        default=[],
        type=parse_point,
        help="x,y[,neg] click on one object on --frame, in pixels; repeat",
    )
    trk.add_argument(
        "--box",
        type=parse_box,
        default=None,
        help="x0,y0,x1,y1 box around the clicked object on --frame",
    )
    trk.add_argument(
        "--frame", type=parse_count, default=0, help="frame the prompts are on (default 0)"
    )
    trk.add_argument("--direction", default="forward", choices=["forward", "backward", "both"])
    trk.add_argument(
        "--score-threshold",
        type=parse_fraction,
        default=0.5,
        help="concept detections below this score are ignored (default 0.5)",
    )
    trk.add_argument(
        "--new-track-threshold",
        type=parse_fraction,
        default=0.7,
        help="score a concept detection needs to start a new track (default 0.7)",
    )
    trk.add_argument(
        "--max-objects",
        type=parse_positive_int,
        default=None,
        help="most concept tracks alive at once; extra new detections are dropped, lowest "
        "score first (default: no practical limit)",
    )
    trk.add_argument("--out", required=True, type=Path, help="output folder")
    trk.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4")
    add_model_args(trk)
    trk.set_defaults(run=track)


def track(args: argparse.Namespace) -> int:
    """Run `sam3 track`; returns the exit code (2 for an unreadable video or bad prompts).

    Writes OUT/frames/NNNNNN.json per propagated frame ({"frame", "height", "width",
    "instances": [{"track_id", "label", "score", "box" xyxy px, "segmentation" COCO RLE}]}),
    OUT/video.json (source, frame count, size, label names, frames written) and OUT/overlay.mp4
    (the propagated frames in index order, coloured by track id).
    """
    import json

    from tqdm import tqdm

    from sam3_core.formats.coco import instance_records
    from sam3_core.formats.overlay import write_track_overlay
    from sam3_core.video.association import AssociationConfig
    from sam3_core.video.frames import VideoReadError, open_frames
    from sam3_core.video.predictor import VideoPredictor

    clicked = bool(args.point) or args.box is not None
    if not clicked and not args.concept and not args.exemplar:
        print("sam3: give --point/--box for one object, or --concept/--exemplar", file=sys.stderr)
        return 2
    try:
        frames = open_frames(args.video)
    except VideoReadError as err:
        print(f"sam3: error: {err}", file=sys.stderr)
        return 2
    n = len(frames)
    if not 0 <= args.frame < n:
        print(
            f"sam3: error: --frame {args.frame} is outside the video's {n} frames (0..{n - 1})",
            file=sys.stderr,
        )
        return 2
    vp = VideoPredictor.from_pretrained(
        args.checkpoint,
        config=args.config,
        device=args.device,
        precision=args.precision,
        token=args.token,
    )
    limit = {} if args.max_objects is None else {"max_num_objects": args.max_objects}
    assoc = AssociationConfig(
        score_threshold_detection=args.score_threshold,
        new_det_thresh=args.new_track_threshold,
        **limit,
    )
    session = vp.start(frames, association=assoc)
    if clicked:
        points = [p[:2] for p in args.point] or None
        labels = [p[2] for p in args.point] or None
        session.add_prompt(args.frame, obj_id=1, points=points, point_labels=labels, boxes=args.box)
    if args.concept or args.exemplar:
        session.add_concept(
            args.frame, concepts=args.concept or None, exemplars=args.exemplar or None
        )
    (args.out / "frames").mkdir(parents=True, exist_ok=True)
    total = {"forward": n - args.frame, "backward": args.frame + 1}
    total["both"] = n
    written: set[int] = set()
    steps = session.propagate(start=args.frame, direction=args.direction)
    for t, inst in tqdm(steps, total=total[args.direction], unit="frame", desc="track"):
        record = {
            "frame": t,
            "height": session.size[0],
            "width": session.size[1],
            "instances": instance_records(inst),
        }
        (args.out / "frames" / f"{t:06d}.json").write_text(json.dumps(record))
        written.add(t)
    meta = {
        "video": str(args.video),
        "num_frames": n,
        "height": session.size[0],
        "width": session.size[1],
        "label_names": session.label_names,
        "frames": sorted(written),
    }
    (args.out / "video.json").write_text(json.dumps(meta, indent=1))
    if not args.no_overlay:
        fps = getattr(frames, "fps", None) or 10.0
        write_track_overlay(frames, sorted(written), args.out, fps)
    frames.close()
    print(f"sam3: {len(written)} frames -> {args.out / 'frames'}")
    return 0
