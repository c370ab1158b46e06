"""`sam3` command line: segment images by concept into COCO JSON with overlay PNGs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sam3_core.prompts import PromptError


def parse_exemplar(text: str):
    """'x0,y0,x1,y1' or 'x0,y0,x1,y1,neg' -> Exemplar (pixels of the original image)."""
    from sam3_core.results import Exemplar

    parts = [p.strip() for p in text.split(",")]
    negative = len(parts) == 5 and parts[4].lower() in ("neg", "negative", "0", "-")
    if len(parts) not in (4, 5) or (
        len(parts) == 5 and not negative and parts[4].lower() not in ("pos", "positive", "1", "+")
    ):
        raise argparse.ArgumentTypeError(
            f"--exemplar {text!r}: expected x0,y0,x1,y1 or x0,y0,x1,y1,neg (pixels)"
        )
    try:
        box = tuple(float(p) for p in parts[:4])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--exemplar {text!r}: coordinates must be numbers"
        ) from None
    return Exemplar(box, positive=not negative)


def parse_positive_int(text: str) -> int:
    """A count of at least 1, e.g. '--max-objects 5'."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def parse_point(text: str) -> tuple[float, float, int]:
    """'x,y' or 'x,y,neg' -> (x, y, label) in pixels (label 1 positive, 0 negative)."""
    parts = [p.strip() for p in text.split(",")]
    negative = len(parts) == 3 and parts[2].lower() in ("neg", "negative", "0", "-")
    positive = len(parts) == 3 and parts[2].lower() in ("pos", "positive", "1", "+")
    if len(parts) not in (2, 3) or (len(parts) == 3 and not (negative or positive)):
        raise argparse.ArgumentTypeError(f"--point {text!r}: expected x,y or x,y,neg (pixels)")
    try:
        return float(parts[0]), float(parts[1]), 0 if negative else 1
    except ValueError:
        raise argparse.ArgumentTypeError(f"--point {text!r}: coordinates must be numbers") from None


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'x0,y0,x1,y1' -> a box in pixels."""
    parts = text.split(",")
    try:
        box = tuple(float(p) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"--box {text!r}: expected x0,y0,x1,y1 (pixels)")
    return box


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        default=None,
        help="local .safetensors/.pt file or hub repo id (default facebook/sam3)",
    )
    p.add_argument("--config", default="sam3", help="model config preset (default sam3)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument(
        "--token", default=None, help="Hugging Face token (default: HF_TOKEN or your login)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam3", description="SAM 3: segment anything by concept.")
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser(
        "segment", help="segment images or folders by concept -> COCO JSON + overlays"
    )
    seg.add_argument("inputs", nargs="+", help="image files, folders or globs")
    seg.add_argument(
        "--concept", action="append", default=[], help="a noun phrase; repeat for more"
    )
    seg.add_argument(
        "--exemplar",
        action="append",
        default=[],
        type=parse_exemplar,
        help="x0,y0,x1,y1[,neg] box around an example, in pixels; repeat for more",
    )
    seg.add_argument("--out", required=True, type=Path, help="output folder")
    seg.add_argument("--score-threshold", type=float, default=0.5)
    seg.add_argument("--mask-threshold", type=float, default=0.5)
    seg.add_argument("--batch-size", type=int, default=2, help="images per backbone pass")
    seg.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    _add_model_args(seg)
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
    trk.add_argument("--frame", type=int, default=0, help="frame the prompts are on (default 0)")
    trk.add_argument("--direction", default="forward", choices=["forward", "backward", "both"])
    trk.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="concept detections below this score are ignored (default 0.5)",
    )
    trk.add_argument(
        "--new-track-threshold",
        type=float,
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
    _add_model_args(trk)
    return parser


def segment(args: argparse.Namespace) -> int:
    """Run `sam3 segment`; returns the exit code (1 if any image failed)."""
    from tqdm import tqdm

    from sam3_core.formats.coco import CocoWriter
    from sam3_core.formats.images import ImageReadError, iter_image_files, load_image
    from sam3_core.formats.overlay import draw_overlay
    from sam3_core.predictor import ImagePredictor
    from sam3_core.prompts import normalize_concepts

    files: list[Path] = []
    for item in args.inputs:
        files.extend(iter_image_files(item))
    if not files:
        print(f"sam3: no images found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    if not args.concept and not args.exemplar:
        print("sam3: give at least one --concept or --exemplar", file=sys.stderr)
        return 2
    names = normalize_concepts(args.concept or None, args.exemplar or None, (10**9, 10**9)).names
    predictor = ImagePredictor.from_pretrained(
        args.checkpoint,
        config=args.config,
        device=args.device,
        precision=args.precision,
        token=args.token,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.no_overlays:
        (args.out / "overlays").mkdir(exist_ok=True)
    coco = CocoWriter(names)
    failed: list[tuple[Path, str]] = []
    with tqdm(total=len(files), unit="img", desc="segment") as bar:
        for start in range(0, len(files), args.batch_size):
            chunk, arrays = [], []
            for f in files[start : start + args.batch_size]:
                try:
                    arrays.append(load_image(f))
                    chunk.append(f)
                except ImageReadError as err:
                    failed.append((f, str(err)))
                    tqdm.write(f"sam3: skipped {f}: {err}", file=sys.stderr)
                    bar.update(1)
            if not arrays:
                continue
            for f, arr, state in zip(chunk, arrays, predictor.set_images(arrays)):
                try:
                    inst = predictor.predict(
                        state,
                        args.concept or None,
                        args.exemplar or None,
                        score_threshold=args.score_threshold,
                        mask_threshold=args.mask_threshold,
                    )
                except PromptError as err:
                    failed.append((f, str(err)))
                    tqdm.write(f"sam3: skipped {f}: {err}", file=sys.stderr)
                    bar.update(1)
                    continue
                coco.add(str(f), state.size, inst)
                if not args.no_overlays:
                    draw_overlay(arr, inst).save(args.out / "overlays" / f"{f.stem}.png")
                bar.update(1)
    coco.write(args.out / "annotations.json")
    print(
        f"sam3: {len(coco.images)} images, {len(coco.annotations)} instances -> {args.out / 'annotations.json'}"
    )
    if failed:
        print(
            f"sam3: {len(failed)} image(s) failed: " + ", ".join(str(f) for f, _ in failed),
            file=sys.stderr,
        )
        return 1
    return 0


def track(args: argparse.Namespace) -> int:
    """Run `sam3 track`; returns the exit code (2 for an unreadable video or bad prompts).

    Writes OUT/frames/NNNNNN.json per propagated frame ({"frame", "height", "width",
    "instances": [{"track_id", "label", "score", "box" xyxy px, "segmentation" COCO RLE}]}),
    OUT/video.json (source, frame count, size, label names, frames written) and OUT/overlay.mp4
    (the propagated frames in index order, coloured by track id).
    """
    import json

    from tqdm import tqdm

    from sam3_core.video.association import AssociationConfig
    from sam3_core.video.frames import VideoReadError, open_frames
    from sam3_core.video.session import VideoPredictor

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
            "instances": _instance_records(inst),
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
        _write_overlay(frames, sorted(written), args.out, getattr(frames, "fps", None) or 10.0)
    frames.close()
    print(f"sam3: {len(written)} frames -> {args.out / 'frames'}")
    return 0


def _instance_records(inst) -> list[dict]:
    """Instances -> JSON-ready dicts with track id, label, score, box and RLE mask."""
    from sam3_core.postprocess import mask_to_rle

    names = inst.names()
    return [
        {
            "track_id": int(inst.track_ids[i]),
            "label": names[i],
            "score": float(inst.scores[i]),
            "box": [float(v) for v in inst.boxes[i]],
            "segmentation": mask_to_rle(inst.masks[i]),
        }
        for i in range(len(inst))
    ]


def _write_overlay(frames, indices: list[int], out: Path, fps: float) -> None:
    """OUT/overlay.mp4 from the written per-frame JSON (libx264 when available, else mpeg4)."""
    import json
    from fractions import Fraction

    import av
    import numpy as np
    from tqdm import tqdm

    from sam3_core.formats.overlay import draw_overlay
    from sam3_core.postprocess import rle_to_mask
    from sam3_core.results import Instances

    h, w = frames.size
    try:
        av.codec.Codec("libx264", "w")
        codec = "libx264"
    except Exception:  # noqa: BLE001 - PyAV raises different errors across versions
        codec = "mpeg4"
    with av.open(str(out / "overlay.mp4"), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width, stream.pix_fmt = h + h % 2, w + w % 2, "yuv420p"
        for t in tqdm(indices, unit="frame", desc="overlay"):
            rec = json.loads((out / "frames" / f"{t:06d}.json").read_text())["instances"]
            names = sorted({r["label"] for r in rec})
            masks = [rle_to_mask(r["segmentation"]) for r in rec]
            inst = Instances(
                np.stack(masks) if masks else np.zeros((0, h, w), bool),
                np.array([r["box"] for r in rec], np.float32).reshape(-1, 4),
                np.array([r["score"] for r in rec], np.float32),
                np.array([names.index(r["label"]) for r in rec], np.int64),
                names,
                np.zeros((len(rec), 1, 1), np.float32),
                track_ids=np.array([r["track_id"] for r in rec], np.int64),
            )
            image = np.asarray(draw_overlay(frames[t], inst))
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sam3` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "segment":
            return segment(args)
        if args.command == "track":
            return track(args)
    except (PromptError, ValueError, RuntimeError) as err:
        print(f"sam3: error: {err}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
