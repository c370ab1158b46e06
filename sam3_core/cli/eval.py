"""`sam3 eval`: SA-Co metrics and COCO AP of predictions against a user's labels, per concept,
and per-concept score thresholds calibrated on them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam3_core.cli.args import parse_fraction


def register(sub: argparse._SubParsersAction) -> None:
    """Add `eval` to the `sam3` subcommands."""
    ev = sub.add_parser(
        "eval",
        help="cgF1 / pmF1 / IL_MCC and AP per concept against COCO labels; calibrate "
        "per-concept thresholds",
    )
    ev.add_argument("--gt", required=True, type=Path, help="ground truth: COCO or SA-Co JSON")
    ev.add_argument(
        "--pred",
        required=True,
        type=Path,
        help="predictions: COCO results JSON, COCO JSON with scores, or a job's output folder",
    )
    ev.add_argument(
        "--threshold",
        type=parse_fraction,
        default=None,
        help="keep predictions scoring at least this, every concept (default 0.5)",
    )
    ev.add_argument(
        "--thresholds", type=Path, default=None, help="per-concept thresholds file to evaluate"
    )
    ev.add_argument(
        "--calibrate",
        action="store_true",
        help="choose each concept's threshold maximising --metric (predictions should come "
        "from a low threshold, e.g. --score-threshold 0.1)",
    )
    ev.add_argument("--metric", choices=["cgF1", "F1"], default="cgF1", help="for --calibrate")
    ev.add_argument(
        "--exhaustive",
        action="store_true",
        help="every image is labelled for every concept (absent concepts are negatives); "
        "else is_instance_exhaustive on each image entry decides",
    )
    ev.add_argument("--iou-type", choices=["segm", "bbox"], default="segm", help="mask or box IoU")
    ev.add_argument("--no-ap", action="store_true", help="skip COCO AP (faster)")
    ev.add_argument("--json", type=Path, default=None, help="write every figure as JSON here")
    ev.add_argument("--plot", type=Path, default=None, help="PNG of the figures vs threshold")
    ev.add_argument(
        "--thresholds-out", type=Path, default=None, help="write calibrated thresholds here"
    )
    ev.set_defaults(run=evaluate_command)


def evaluate_command(args: argparse.Namespace) -> int:
    """Run `sam3 eval`; returns the exit code (2 for unusable files or options)."""
    from sam3_core.metrics.data import EvalDataError
    from sam3_core.metrics.thresholds import ThresholdsError

    try:
        return run_eval(args)
    except (EvalDataError, ThresholdsError) as err:
        print(f"sam3: error: {err}", file=sys.stderr)
        return 2


def run_eval(args: argparse.Namespace) -> int:
    """The work of `sam3 eval` (errors raised as EvalDataError / ThresholdsError)."""
    from sam3_core.metrics.calibration import calibrate_table, sweep
    from sam3_core.metrics.evaluation import full_report, table_report
    from sam3_core.metrics.loaders import load_eval_set
    from sam3_core.metrics.report import format_table, write_json
    from sam3_core.metrics.table import pair_table
    from sam3_core.metrics.thresholds import (
        Thresholds,
        ThresholdsError,
        load_thresholds,
        save_thresholds,
    )

    if args.threshold is not None and args.thresholds is not None:
        raise ThresholdsError("give --threshold (one for all) or --thresholds FILE, not both")
    if args.thresholds_out is not None and not args.calibrate:
        raise ThresholdsError("--thresholds-out needs --calibrate")
    given = (
        load_thresholds(args.thresholds)
        if args.thresholds is not None
        else Thresholds.uniform(0.5 if args.threshold is None else args.threshold)
    )
    evalset = load_eval_set(args.gt, args.pred, exhaustive=args.exhaustive)
    pairs = evalset.pairs()
    table = pair_table(pairs, evalset.concepts, args.iou_type)
    for note in evalset.notes:
        print(f"sam3: note: {note}", file=sys.stderr)
    if evalset.skipped:
        print(
            f"sam3: note: {evalset.skipped} predictions are on (image, concept) pairs that are "
            "not evaluated (not exhaustively labelled): left out",
            file=sys.stderr,
        )
    used = given
    if args.calibrate:
        source = {
            "gt": str(args.gt),
            "pred": str(args.pred),
            "pairs": len(pairs),
            "iou_type": args.iou_type,
            "exhaustive": bool(args.exhaustive),
        }
        used = calibrate_table(table, args.metric, default=given.default, source=source)
    report = full_report(pairs, table, used, ap=not args.no_ap)
    report.update(iou_type=args.iou_type, skipped_predictions=evalset.skipped)
    if args.calibrate:
        baseline = table_report(table, given)
        report["baseline"] = {"thresholds": given.to_dict(), **baseline}
    print(format_table(report))
    if args.calibrate:
        before = report["baseline"]["overall"][args.metric]
        after = report["overall"][args.metric]
        print(
            f"overall {args.metric}: {before:.1f} at the given thresholds -> {after:.1f} "
            "calibrated (on the same images: optimistic; check on held-out images)"
        )
    if args.json is not None:
        write_json(report, args.json)
        print(f"sam3: figures -> {args.json}")
    if args.plot is not None:
        from sam3_core.metrics.plot import plot_curves

        plot_curves(sweep(table), args.plot, chosen=used if args.calibrate else None)
        print(f"sam3: plot -> {args.plot}")
    if args.thresholds_out is not None:
        save_thresholds(used, args.thresholds_out)
        print(f"sam3: thresholds -> {args.thresholds_out} (use with --thresholds)")
    return 0
