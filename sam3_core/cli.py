"""`sam3` command line: segment images by concept into COCO JSON with overlay PNGs."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from sam3_core.config import CONFIGS
from sam3_core.device import pick_device, precision_note
from sam3_core.prompts import PromptError

TILE_ABOVE = 4096  # px: `sam3 segment` tiles images with a longer side
TILE_SIZE = 1008  # px: tile size when tiling is automatic (the model's input size)
INTERRUPTED = 130  # exit code after Ctrl-C (128 + SIGINT), as shells report it


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


def parse_number(
    kind: type = float, low: float | None = None, high: float | None = None
) -> Callable[[str], float]:
    """An argparse type: a `kind` (int or float) number within [low, high], else a usage error."""
    noun = "a whole number" if kind is int else "a number"
    bounds = (
        f"between {low} and {high}"
        if low is not None and high is not None
        else f"of at least {low}"
        if low is not None
        else "in range"
    )

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if (
            value is None
            or not math.isfinite(value)
            or (low is not None and value < low)
            or (high is not None and value > high)
        ):
            raise argparse.ArgumentTypeError(f"expected {noun} {bounds}, got {text!r}")
        return value

    return parse


parse_positive_int = parse_number(int, 1)
parse_fraction = parse_number(float, 0.0, 1.0)
parse_count = parse_number(int, 0)


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
    p.add_argument(
        "--config", default="sam3", choices=sorted(CONFIGS), help="model config (default sam3)"
    )
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="fp32 (default, exact); bf16 is faster on GPUs and AMX CPUs only (warned otherwise)",
    )
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
    seg.add_argument("--score-threshold", type=parse_fraction, default=0.5)
    seg.add_argument("--mask-threshold", type=parse_fraction, default=0.5)
    seg.add_argument(
        "--batch-size", type=parse_positive_int, default=2, help="images (or tiles) per pass"
    )
    seg.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    seg.add_argument(
        "--tile",
        type=parse_positive_int,
        default=None,
        metavar="SIZE",
        help="segment every image in tiles of SIZE px (e.g. 1008); default: only large images",
    )
    seg.add_argument(
        "--tile-above",
        type=parse_positive_int,
        default=TILE_ABOVE,
        metavar="PX",
        help=f"tile images with a side over PX pixels (default {TILE_ABOVE}) or too large to "
        "read at once",
    )
    seg.add_argument(
        "--tile-overlap", type=parse_count, default=128, help="tile overlap in px (default 128)"
    )
    seg.add_argument(
        "--save-every",
        type=parse_positive_int,
        default=25,
        metavar="N",
        help="rewrite annotations.json every N images (default 25), so a stopped run keeps them",
    )
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
    _add_model_args(trk)
    return parser


def overlay_name(image: Path, root: Path) -> Path:
    """Overlay path of an image, unique per file: its path below `root` + '.png' (a/x.jpg.png)."""
    rel = Path(os.path.relpath(os.path.abspath(image), root))
    return rel.parent / f"{rel.name}.png"


class SegmentRun:
    """The results of one `sam3 segment` run, written as they come (COCO file, overlays)."""

    def __init__(self, args: argparse.Namespace, files: list[Path], names: list[str]) -> None:
        from sam3_core.formats.coco import CocoWriter

        self.args, self.coco, self.failed = args, CocoWriter(names), []
        self.path = args.out / "annotations.json"
        parents = [os.path.dirname(os.path.abspath(f)) for f in files]
        self.root = Path(os.path.commonpath(parents))
        self.unsaved = 0

    def failure(self, file: Path, err: Exception) -> None:
        """Report an image that could not be segmented; the run goes on."""
        from tqdm import tqdm

        self.failed.append((file, str(err)))
        tqdm.write(f"sam3: skipped {file}: {err}", file=sys.stderr)

    def done(self, file: Path, instances, image=None, tiled=None) -> None:
        """Record one image's results: `instances` on its uint8 [H, W, 3] `image`, or `tiled`.

        `tiled` (`TiledInstances`) is drawn on the thumbnail of `image`, then a `TileReader`.
        """
        from sam3_core.formats.overlay import draw_overlay, draw_tiled_overlay

        if tiled is None:
            self.coco.add(str(file), instances.image_size, instances)
        else:
            self.coco.add_tiled(str(file), tiled)
        if not self.args.no_overlays:
            target = self.args.out / "overlays" / overlay_name(file, self.root)
            target.parent.mkdir(parents=True, exist_ok=True)
            picture = (
                draw_overlay(image, instances)
                if tiled is None
                else draw_tiled_overlay(*image.thumbnail(), tiled)
            )
            picture.save(target)
        self.unsaved += 1
        if self.unsaved >= self.args.save_every:
            self.save()

    def save(self) -> None:
        """Rewrite annotations.json (atomically) with every image finished so far."""
        self.coco.write(self.path)
        self.unsaved = 0


def _segment_tiled(run: SegmentRun, predictor, file: Path) -> None:
    """One image through `segment_tiled` (read lazily where the format allows)."""
    from sam3_core.formats.images import open_array
    from sam3_core.large.tiling import TileReader, segment_tiled

    args = run.args
    reader = TileReader(open_array(file))
    tiled = segment_tiled(
        predictor,
        reader,
        args.concept or None,
        args.exemplar or None,
        tile_size=args.tile or TILE_SIZE,
        overlap=args.tile_overlap,
        batch_size=args.batch_size,
        score_threshold=args.score_threshold,
        mask_threshold=args.mask_threshold,
    )
    run.done(file, None, reader, tiled)


def _segment_batch(run: SegmentRun, predictor, chunk: list[Path], bar) -> None:
    """Images of one batch: large ones tiled one by one, the others in one backbone pass."""
    from sam3_core.formats.images import (
        ImageReadError,
        ImageTooLargeError,
        load_image,
        read_image_size,
    )

    args = run.args
    files, arrays = [], []
    for f in chunk:
        try:
            tiled = args.tile is not None or max(read_image_size(f)) > args.tile_above
            if not tiled:
                try:
                    arrays.append(load_image(f))
                    files.append(f)
                    continue
                except ImageTooLargeError:
                    pass
            _segment_tiled(run, predictor, f)
        except (ImageReadError, PromptError, ValueError) as err:
            run.failure(f, err)
        bar.update(1)
    states = predictor.set_images(arrays) if arrays else []
    for f, arr, state in zip(files, arrays, states):
        try:
            inst = predictor.predict(
                state,
                args.concept or None,
                args.exemplar or None,
                score_threshold=args.score_threshold,
                mask_threshold=args.mask_threshold,
            )
            run.done(f, inst, arr)
        except PromptError as err:
            run.failure(f, err)
        bar.update(1)


def segment(args: argparse.Namespace) -> int:
    """Run `sam3 segment`; returns the exit code (1 if any image failed, 130 if interrupted).

    annotations.json is rewritten atomically every `--save-every` images and when the run
    ends, stops on Ctrl-C or crashes, so the images finished so far are never lost.
    """
    from tqdm import tqdm

    from sam3_core.formats.images import iter_image_files
    from sam3_core.predictor import ImagePredictor
    from sam3_core.prompts import normalize_concepts

    files: list[Path] = []
    for item in args.inputs:
        files.extend(iter_image_files(item))
    files = list(dict.fromkeys(files))  # an image named twice is segmented once
    if not files:
        print(f"sam3: no images found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    if not args.concept and not args.exemplar:
        print("sam3: give at least one --concept or --exemplar", file=sys.stderr)
        return 2
    if args.tile_overlap >= (args.tile or TILE_SIZE):
        print(
            f"sam3: error: --tile-overlap {args.tile_overlap} must be smaller than the tile "
            f"size {args.tile or TILE_SIZE} (--tile)",
            file=sys.stderr,
        )
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
    run = SegmentRun(args, files, names)
    try:
        with tqdm(total=len(files), unit="img", desc="segment") as bar:
            for start in range(0, len(files), args.batch_size):
                _segment_batch(run, predictor, files[start : start + args.batch_size], bar)
    except KeyboardInterrupt:
        print(
            f"sam3: interrupted; {len(run.coco.images)} of {len(files)} images saved in {run.path}",
            file=sys.stderr,
        )
        return INTERRUPTED
    finally:
        run.save()  # also when stopped or crashed: what finished is kept
    print(
        f"sam3: {len(run.coco.images)} images, {len(run.coco.annotations)} instances -> {run.path}"
    )
    if run.failed:
        print(
            f"sam3: {len(run.failed)} image(s) failed: " + ", ".join(str(f) for f, _ in run.failed),
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

    from sam3_core.formats.coco import instance_records
    from sam3_core.formats.overlay import write_track_overlay
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sam3` console script."""
    args = build_parser().parse_args(argv)
    note = precision_note(pick_device(args.device), args.precision)
    if note:
        print(f"sam3: note: {note}", file=sys.stderr)
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
