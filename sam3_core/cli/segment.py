"""`sam3 segment`: segment images or folders by concept, as a dataset job (`run_job`), here or on
a Ray cluster -> Parquet records, COCO / Label Studio files and overlay PNGs; resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam3_core.cli.args import (
    INTERRUPTED,
    add_job_args,
    add_model_args,
    parse_count,
    parse_exemplar,
    parse_fraction,
    parse_positive_int,
)
from sam3_core.large.tile_defaults import TILE_ABOVE, TILE_SIZE

FORMATS = ("coco", "parquet", "labelstudio")
EXPORT_OF = {"coco": "coco", "labelstudio": "labelstudio"}  # parquet: the shards themselves
MAX_LISTED = 20  # failed images named on stderr


def parse_formats(text: str) -> list[str]:
    """'coco,labelstudio' -> ['coco', 'labelstudio'] (each one of FORMATS)."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"--format {text!r}: choose from {', '.join(FORMATS)} (repeat or comma-separate)"
        )
    return names


def register(sub: argparse._SubParsersAction) -> None:
    """Add `segment` to the `sam3` subcommands."""
    seg = sub.add_parser(
        "segment",
        help="segment images or folders by concept -> COCO JSON + overlays (resumable; --ray)",
    )
    seg.add_argument(
        "inputs",
        nargs="*",
        help="image files, folders (recursive), globs, .txt/.parquet/.jsonl lists, s3:// or "
        "gs:// URIs (none with --prompts: the prompts file's images)",
    )
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
    seg.add_argument(
        "--prompts",
        type=Path,
        default=None,
        metavar="FILE",
        help="per-image prompts: .jsonl/.json/.parquet rows of a path and its prompts, e.g. "
        '{"path": "a.jpg", "prompts": ["cat", {"name": "dog", "exemplars": '
        "[[10, 20, 80, 90, 1]]}]}; listed images use only their own, the others "
        "--concept/--exemplar",
    )
    seg.add_argument(
        "--relative-boxes",
        action="store_true",
        help="the --prompts boxes are fractions of the image's width and height",
    )
    seg.add_argument("--out", required=True, type=Path, help="output folder (resumed if it exists)")
    seg.add_argument(
        "--score-threshold",
        type=parse_fraction,
        default=None,
        help="keep instances scoring at least this (default 0.5)",
    )
    seg.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        metavar="FILE",
        help="per-concept score thresholds (JSON, e.g. from sam3 eval --calibrate); "
        "replaces --score-threshold",
    )
    seg.add_argument("--mask-threshold", type=parse_fraction, default=0.5)
    seg.add_argument(
        "--batch-size", type=parse_positive_int, default=2, help="images (or tiles) per pass"
    )
    seg.add_argument(
        "--format",
        dest="formats",
        action="append",
        type=parse_formats,
        default=None,
        help="coco (annotations.json, default), labelstudio (labelstudio.json, brush masks) "
        "and/or parquet (the records in shards/ only); repeat or comma-separate",
    )
    seg.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    seg.add_argument(
        "--store",
        type=Path,
        default=None,
        metavar="DIR",
        help="embedding store folder (e.g. filled by sam3 embed): images found there skip the "
        "backbone, the others are added",
    )
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
        default=None,
        metavar="N",
        help="also rewrite the COCO/Label Studio files every N images (each rewrite reads all "
        "records); records themselves are saved after every batch",
    )
    add_job_args(seg)
    add_model_args(seg)
    seg.set_defaults(run=segment)


def usage_error(args: argparse.Namespace) -> str | None:
    """A message for flags that cannot work together, else None."""
    if not args.concept and not args.exemplar and args.prompts is None:
        return "give at least one --concept or --exemplar, or a --prompts file"
    if not args.inputs and args.prompts is None:
        return "give the images to segment (files, folders, globs or lists), or --prompts FILE"
    if args.relative_boxes and args.prompts is None:
        return "--relative-boxes applies to the boxes of a --prompts file: give one"
    if args.tile_overlap >= (args.tile or TILE_SIZE):
        return (
            f"--tile-overlap {args.tile_overlap} must be smaller than the tile size "
            f"{args.tile or TILE_SIZE} (--tile)"
        )
    if args.thresholds is not None and args.score_threshold is not None:
        return "give --thresholds or --score-threshold, not both (the file has a default)"
    if args.workers is not None and args.ray is None:
        return "--workers needs --ray (the local runner is one process; --ray runs N workers)"
    return None


def job_spec(args: argparse.Namespace):
    """The `JobSpec` of the command line."""
    from sam3_core.jobs.spec import JobSpec

    return JobSpec(
        inputs=tuple(args.inputs),
        concepts=tuple(args.concept),
        exemplars=tuple(args.exemplar),
        score_threshold=0.5 if args.score_threshold is None else args.score_threshold,
        mask_threshold=args.mask_threshold,
        thresholds=args.thresholds,
        checkpoint=args.checkpoint,
        config=args.config,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        tile=args.tile,
        tile_above=args.tile_above,
        tile_overlap=args.tile_overlap,
        store=args.store,
        image_prompts=args.prompts,
        relative_boxes=args.relative_boxes,
        token=args.token,
    )


def report_failures(out: Path) -> int:
    """Name the images whose record is an error (this run or an earlier one); their count."""
    from sam3_core.jobs.records import iter_records

    failed = [(r["id"], r["error"]) for r in iter_records(out, ["id", "error"]) if r["error"]]
    for image_id, error in failed[:MAX_LISTED]:
        print(f"sam3: failed {image_id}: {error}", file=sys.stderr)
    if failed:
        more = f" ({len(failed) - MAX_LISTED} more not shown)" if len(failed) > MAX_LISTED else ""
        print(
            f"sam3: {len(failed)} image(s) failed{more}; fix them and re-run with --retry-errors",
            file=sys.stderr,
        )
    return len(failed)


def segment(args: argparse.Namespace) -> int:
    """Run `sam3 segment`; returns the exit code (1 if any image failed, 130 if interrupted).

    Records are stored after every batch, so a stopped run (Ctrl-C, a crash, a kill) loses at
    most the batches in flight and the same command resumes it; the annotation files are
    written at the end, also when stopped or crashed (from what finished), and every
    `--save-every` images.
    """
    from sam3_core.jobs.run import run_job, write_exports

    args.formats = list(dict.fromkeys(f for group in args.formats or [["coco"]] for f in group))
    problem = usage_error(args)
    if problem:
        print(f"sam3: error: {problem}", file=sys.stderr)
        return 2
    spec = job_spec(args)
    files = [EXPORT_OF[f] for f in args.formats if f in EXPORT_OF]  # annotation files to write
    progress = {"stored": False, "saved": 0, "done": 0, "total": 0}

    def on_progress(done: int, total: int) -> None:
        progress.update(stored=True, done=done, total=total)
        if args.save_every and done - progress["saved"] >= args.save_every:
            write_exports(args.out, files)  # every record so far
            progress["saved"] = done

    try:
        summary = run_job(
            spec,
            args.out,
            runner="local" if args.ray is None else "ray",
            ray_address=args.ray,
            workers=args.workers,
            restart=args.restart,
            retry_errors=args.retry_errors,
            exports=[*files, *([] if args.no_overlays else ["overlays"])],
            on_progress=on_progress,
        )
    except BaseException as err:
        if progress["stored"]:
            write_exports(args.out, files)  # what finished is kept in the files too
        if isinstance(err, KeyboardInterrupt):
            print(
                f"sam3: interrupted; {progress['done']} of {progress['total']} images saved in "
                f"{args.out} (run the same command again to resume)",
                file=sys.stderr,
            )
            return INTERRUPTED
        raise
    print(f"sam3: {summary}")
    for name, path in summary.exports.items():
        print(f"sam3: {name} -> {path}")
    return 1 if report_failures(summary.out_dir) else 0
