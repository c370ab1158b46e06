"""`sam3 segment`: segment images or folders by concept into COCO JSON with overlay PNGs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sam3_core.cli.args import (
    INTERRUPTED,
    add_model_args,
    parse_count,
    parse_exemplar,
    parse_fraction,
    parse_positive_int,
)
from sam3_core.prompts import PromptError

TILE_ABOVE = 4096  # px: `sam3 segment` tiles images with a longer side
TILE_SIZE = 1008  # px: tile size when tiling is automatic (the model's input size)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segment` to the `sam3` subcommands."""
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
    add_model_args(seg)
    seg.set_defaults(run=segment)


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
