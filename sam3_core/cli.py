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
    if len(parts) not in (4, 5) or (len(parts) == 5 and not negative and parts[4].lower() not in ("pos", "positive", "1", "+")):
        raise argparse.ArgumentTypeError(
            f"--exemplar {text!r}: expected x0,y0,x1,y1 or x0,y0,x1,y1,neg (pixels)"
        )
    try:
        box = tuple(float(p) for p in parts[:4])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--exemplar {text!r}: coordinates must be numbers") from None
    return Exemplar(box, positive=not negative)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="local .safetensors/.pt file or hub repo id (default facebook/sam3)")
    p.add_argument("--config", default="sam3", help="model config preset (default sam3)")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--token", default=None, help="Hugging Face token (default: HF_TOKEN or your login)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sam3", description="SAM 3: segment anything by concept.")
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment images or folders by concept -> COCO JSON + overlays")
    seg.add_argument("inputs", nargs="+", help="image files, folders or globs")
    seg.add_argument("--concept", action="append", default=[], help="a noun phrase; repeat for more")
    seg.add_argument("--exemplar", action="append", default=[], type=parse_exemplar,
                     help="x0,y0,x1,y1[,neg] box around an example, in pixels; repeat for more")
    seg.add_argument("--out", required=True, type=Path, help="output folder")
    seg.add_argument("--score-threshold", type=float, default=0.5)
    seg.add_argument("--mask-threshold", type=float, default=0.5)
    seg.add_argument("--batch-size", type=int, default=2, help="images per backbone pass")
    seg.add_argument("--no-overlays", action="store_true", help="skip the overlay PNGs")
    _add_model_args(seg)
    return parser


def segment(args: argparse.Namespace) -> int:
    """Run `sam3 segment`; returns the exit code (1 if any image failed)."""
    from tqdm import tqdm

    from sam3_core.coco import CocoWriter
    from sam3_core.io import ImageReadError, iter_image_files, load_image
    from sam3_core.overlay import draw_overlay
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
        args.checkpoint, config=args.config, device=args.device, precision=args.precision, token=args.token
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
                        state, args.concept or None, args.exemplar or None,
                        score_threshold=args.score_threshold, mask_threshold=args.mask_threshold,
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
    print(f"sam3: {len(coco.images)} images, {len(coco.annotations)} instances -> {args.out / 'annotations.json'}")
    if failed:
        print(f"sam3: {len(failed)} image(s) failed: " + ", ".join(str(f) for f, _ in failed), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sam3` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "segment":
            return segment(args)
    except (PromptError, ValueError, RuntimeError) as err:
        print(f"sam3: error: {err}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
