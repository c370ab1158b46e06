"""`sam3-labelstudio serve`: load SAM 3 once, then serve the Label Studio ML backend protocol;
`embed`: encode a project's images into the embedding store ahead of time; `preannotate`: a
project's predictions as a dataset job; `import`: a job's labelstudio.json into a project."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sam3_core.cli.args import parse_fraction, parse_positive_int
from sam3_core.store import STORE_ENV
from sam3_labelstudio.import_job import add_import_parser, import_command
from sam3_labelstudio.options import (
    add_model_options,
    add_source_options,
    add_store_options,
    add_thresholds_option,
    load_predictor,
    load_thresholds_option,
    make_fetcher,
)
from sam3_labelstudio.preannotate import POST_BATCH
from sam3_labelstudio.tracker_options import add_video_options, association

if TYPE_CHECKING:
    from sam3_labelstudio.backend import Backend

log = logging.getLogger("sam3_labelstudio")


def build_parser() -> argparse.ArgumentParser:
    """The command line: `serve` (model, network, Label Studio, thresholds) and `embed`."""
    parser = argparse.ArgumentParser(prog="sam3-labelstudio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="start the ML backend (model loaded before listening)")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    s.add_argument("--port", type=int, default=9090)
    add_model_options(s)
    s.add_argument(
        "--basic-auth",
        default=os.environ.get("SAM3_LS_BASIC_AUTH"),
        metavar="USER:PASS",
        help="require HTTP Basic auth (env SAM3_LS_BASIC_AUTH)",
    )
    add_source_options(s)
    s.add_argument(
        "--score-threshold",
        type=parse_fraction,
        default=0.5,
        help="concept detections kept, in images and videos (default 0.5)",
    )
    s.add_argument("--mask-threshold", type=parse_fraction, default=0.5)
    add_thresholds_option(s)
    add_video_options(s)
    add_store_options(s)
    s.add_argument(
        "--max-in-flight",
        type=int,
        default=4,
        help="requests handled at once (the rest wait; bounds memory under many clients)",
    )
    s.add_argument("--log-level", default="info")
    e = sub.add_parser(
        "embed", help="encode a project's task images into --embedding-store (resumable)"
    )
    e.add_argument("--project", type=parse_positive_int, required=True, help="project id")
    add_model_options(e)
    add_source_options(e)
    add_store_options(e, required=True)
    e.add_argument("--batch-size", type=parse_positive_int, default=4, help="images per pass")
    e.add_argument("--log-level", default="info")
    p = sub.add_parser(
        "preannotate",
        help="predict every task of a project as a dataset job (resumable; --ray) and post the "
        "predictions to Label Studio",
    )
    p.add_argument("--project", type=parse_positive_int, required=True, help="project id")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="job folder: downloaded images, records, resume state (default "
        "./sam3-preannotate-<project>)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: bare --ray joins the cluster running here or starts one, `--ray "
        "local` always starts its own, HOST:PORT joins that one; images must be readable by "
        "every worker (e.g. --local-files-root on shared storage)",
    )
    p.add_argument("--workers", type=parse_positive_int, default=None, help="Ray actors")
    add_model_options(p)
    add_source_options(p)
    p.add_argument("--score-threshold", type=parse_fraction, default=0.5)
    p.add_argument("--mask-threshold", type=parse_fraction, default=0.5)
    add_thresholds_option(p)
    p.add_argument(
        "--embedding-store",
        default=os.environ.get(STORE_ENV),
        metavar="DIR",
        help=f"read and write image embeddings in this folder (env {STORE_ENV})",
    )
    p.add_argument("--batch-size", type=parse_positive_int, default=4, help="images per pass")
    p.add_argument(
        "--post-batch",
        type=parse_positive_int,
        default=POST_BATCH,
        help=f"predictions per import request, posted as the job runs (default {POST_BATCH})",
    )
    p.add_argument("--log-level", default="info")
    add_import_parser(sub)
    return parser


def model_version(checkpoint: str | None, config: str) -> str:
    """A readable version string: config plus checkpoint file or hub id."""
    name = Path(checkpoint).stem if checkpoint and os.path.exists(checkpoint) else checkpoint
    return f"sam3-{config}" + (f"-{name}" if name else "")


def make_backend(args: argparse.Namespace, predictor=None) -> Backend:
    """Load the predictor (unless given) and wire the backend from parsed arguments."""
    from sam3_labelstudio.backend import Backend, Settings  # torch: not for --help
    from sam3_labelstudio.video import attach_video

    tracker = association(args)  # a bad --tracker-option or --thresholds fails before the
    thresholds = load_thresholds_option(args)  # model loads
    if predictor is None:
        predictor = load_predictor(args)
    settings = Settings(args.score_threshold, args.mask_threshold, args.max_in_flight, thresholds)
    version = model_version(args.checkpoint, args.config)
    backend = Backend(predictor, version, make_fetcher(args), settings)
    attach_video(backend, args.max_video_frames, tracker, args.keyframe_tolerance)
    return backend


def project_or_usage_error(args: argparse.Namespace):
    """(client, schema, tasks) of --project, or an error message for the user."""
    from sam3_labelstudio.project import ProjectError, client, read_project

    if not (args.label_studio_url and args.label_studio_token):
        return "set LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY to read the project"
    ls = client(args.label_studio_url, args.label_studio_token)
    try:
        return (ls, *read_project(ls, args.project, args.label_studio_url))
    except ProjectError as exc:
        return str(exc)


def embed(args: argparse.Namespace) -> int:
    """Run `sam3-labelstudio embed`; 1 when a task's image failed (see the log), else 0."""
    from sam3_labelstudio.embed import embed_project

    found = project_or_usage_error(args)
    if isinstance(found, str):
        print(f"sam3-labelstudio embed: {found}", file=sys.stderr)
        return 2
    _, _, tasks = found
    predictor = load_predictor(args)
    counts = embed_project(predictor, make_fetcher(args), tasks, args.batch_size)
    store = predictor.store
    print(
        f"project {args.project}: {counts['tasks']} tasks, {counts['computed']} encoded, "
        f"{counts['stored']} already in {store.path}, {counts['failed']} failed; store "
        f"{len(store)} images, {store.disk_bytes() / 2**20:.0f} MB"
    )
    return 1 if counts["failed"] else 0


def preannotate(args: argparse.Namespace) -> int:
    """Run `sam3-labelstudio preannotate`; 1 when a task failed (see the log) or Label Studio
    refused an import (run it again to resume), 2 for settings that cannot run, else 0."""
    from sam3_core.jobs import InputError, JobSpec, JobSpecError, run_job
    from sam3_labelstudio.preannotate import PostError, PredictionPoster, task_inputs

    found = project_or_usage_error(args)
    if isinstance(found, str):
        print(f"sam3-labelstudio preannotate: {found}", file=sys.stderr)
        return 2
    ls, schema, tasks = found
    version = model_version(args.checkpoint, args.config)
    already = sum(version in t.versions for t in tasks)
    out = args.out or Path(f"sam3-preannotate-{args.project}")
    todo = [t for t in tasks if version not in t.versions]
    paths = task_inputs(todo, make_fetcher(args), out / "images")
    poster = PredictionPoster(ls, args.project, paths, schema, version, args.post_batch)
    if paths:
        listing = out / "inputs.txt"
        listing.write_text("".join(f"{p}\n" for p in sorted(paths)))
        job = out / "job"
        try:
            spec = JobSpec(
                inputs=(str(listing),), concepts=tuple(schema.concepts(schema.batch_outputs())),
                score_threshold=args.score_threshold, mask_threshold=args.mask_threshold,
                thresholds=load_thresholds_option(args), checkpoint=args.checkpoint,
                config=args.config, device=args.device, precision=args.precision,
                batch_size=args.batch_size, store=args.embedding_store,
            )  # fmt: skip
            runner = "local" if args.ray is None else "ray"
            print(run_job(spec, job, runner=runner, ray_address=args.ray, workers=args.workers,
                          on_progress=lambda done, total: poster.read_new_shards(job)))  # fmt: skip
            poster.read_new_shards(job)  # what the hook has not seen (an earlier run's)
            poster.flush()
        except (JobSpecError, InputError, PostError) as exc:  # settings, or Label Studio down
            print(f"sam3-labelstudio preannotate: {exc}", file=sys.stderr)
            return 1 if isinstance(exc, PostError) else 2
    skipped = len(todo) - len(paths)  # their image could not be fetched
    counts = poster.counts
    print(
        f"project {args.project}: {len(tasks)} tasks, {counts['posted']} predictions posted "
        f"({version}), {already} already had one, {counts['failed'] + skipped} failed"
    )
    return 1 if counts["failed"] or skipped else 0


def serve(args: argparse.Namespace) -> int:
    """Run `sam3-labelstudio serve` until interrupted."""
    if args.basic_auth and ":" not in args.basic_auth:
        print("--basic-auth must be USER:PASS", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.basic_auth:
        log.warning(
            "listening on %s without --basic-auth: anyone who can reach it may use it", args.host
        )
    import uvicorn

    from sam3_core.device import precision_note
    from sam3_labelstudio.memory import limit_arenas
    from sam3_labelstudio.server import create_app

    limit_arenas()  # before the request threads exist: a flat RSS under load
    log.info("loading SAM 3 (%s, %s)...", args.config, args.checkpoint or "facebook/sam3")
    backend = make_backend(args)
    note = precision_note(backend.predictor.device, args.precision)
    if note:
        log.warning(note)
    log.info(
        "model %s ready; listening on http://%s:%d", backend.model_version, args.host, args.port
    )
    app = create_app(backend, args.basic_auth)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sam3-labelstudio`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    commands = {
        "embed": embed,
        "import": import_command,
        "preannotate": preannotate,
        "serve": serve,
    }
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
