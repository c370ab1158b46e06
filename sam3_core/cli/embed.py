"""`sam3 embed`: compute image embeddings once into a store folder (`sam3_core.store`), as a
dataset job here or on a Ray cluster; resumable; reports the store's size per image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam3_core.cli.args import INTERRUPTED, add_job_args, add_model_args, parse_positive_int

MB = 1 << 20


def register(sub: argparse._SubParsersAction) -> None:
    """Add `embed` to the `sam3` subcommands."""
    emb = sub.add_parser(
        "embed",
        help="precompute image embeddings into a store folder that every host reads "
        "(resumable; --ray)",
    )
    emb.add_argument(
        "inputs",
        nargs="+",
        help="image files, folders (recursive), globs, .txt/.parquet lists, s3:// or gs:// URIs",
    )
    emb.add_argument(
        "--store", required=True, type=Path, help="the embedding store folder (created if missing)"
    )
    emb.add_argument(
        "--dtype",
        choices=["fp32", "fp16", "bf16"],
        default=None,
        help="storage precision of a new store (default fp32, exact); an existing store keeps "
        "its own",
    )
    emb.add_argument(
        "--batch-size", type=parse_positive_int, default=4, help="images per backbone pass"
    )
    add_job_args(emb)
    add_model_args(emb)
    emb.set_defaults(run=embed)


def embed(args: argparse.Namespace) -> int:
    """Run `sam3 embed`; returns the exit code (1 if any image failed, 130 if interrupted)."""
    from sam3_core.jobs.embed import JOB_FOLDER, EmbedSpec, run_embed, store_size
    from sam3_core.jobs.records import iter_records

    if args.workers is not None and args.ray is None:
        print(
            "sam3: error: --workers needs --ray (the local runner is one process)", file=sys.stderr
        )
        return 2
    spec = EmbedSpec(
        inputs=tuple(args.inputs),
        store=args.store,
        dtype=args.dtype,
        checkpoint=args.checkpoint,
        config=args.config,
        device=args.device,
        precision=args.precision,
        batch_size=args.batch_size,
        token=args.token,
    )
    try:
        summary = run_embed(
            spec,
            runner="local" if args.ray is None else "ray",
            ray_address=args.ray,
            workers=args.workers,
            restart=args.restart,
            retry_errors=args.retry_errors,
        )
    except KeyboardInterrupt:
        print(
            f"sam3: interrupted; the embeddings computed so far are in {args.store} "
            "(run the same command again to resume)",
            file=sys.stderr,
        )
        return INTERRUPTED
    entries, nbytes = store_size(spec)
    records = list(iter_records(args.store / JOB_FOLDER, ["id", "bytes", "error"]))
    sizes = [r["bytes"] for r in records if r["error"] is None]
    per_image = sum(sizes) / len(sizes) / MB if sizes else 0.0
    print(f"sam3: {summary}")
    print(
        f"sam3: store {args.store}: {entries} embeddings, {nbytes / MB:.1f} MB on disk, "
        f"{per_image:.2f} MB per image"
    )
    failed = [(r["id"], r["error"]) for r in records if r["error"]]
    for image_id, error in failed[:20]:
        print(f"sam3: failed {image_id}: {error}", file=sys.stderr)
    if failed:
        print(f"sam3: {len(failed)} image(s) failed; re-run with --retry-errors", file=sys.stderr)
    return 1 if failed else 0
