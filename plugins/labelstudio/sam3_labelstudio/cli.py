"""`sam3-labelstudio serve`: load SAM 3 once, then serve the Label Studio ML backend protocol."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from sam3_labelstudio.backend import Backend, Settings
from sam3_labelstudio.images import DEFAULT_MAX_MB, MAX_MB_ENV, ImageFetcher
from sam3_labelstudio.video import attach_video

log = logging.getLogger("sam3_labelstudio")


def size_mb(text: str) -> float:
    """A file size limit in MB (> 0), for argparse."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size in MB > 0 (from --max-image-mb or env {MAX_MB_ENV}): "
            "give e.g. 500"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line: `serve` with model, network, Label Studio and threshold options."""
    parser = argparse.ArgumentParser(prog="sam3-labelstudio", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="start the ML backend (model loaded before listening)")
    s.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    s.add_argument("--port", type=int, default=9090)
    s.add_argument(
        "--checkpoint", default=None, help="local file or hub id (default facebook/sam3)"
    )
    s.add_argument("--config", default="sam3", help="model config name (sam3, sam3_tiny)")
    s.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    s.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="fp32 (default, exact); bf16 is faster on recent GPUs and AMX CPUs only (a warning "
        "is logged when the choice is slow or inexact on this device)",
    )
    s.add_argument(
        "--basic-auth",
        default=os.environ.get("SAM3_LS_BASIC_AUTH"),
        metavar="USER:PASS",
        help="require HTTP Basic auth (env SAM3_LS_BASIC_AUTH)",
    )
    s.add_argument(
        "--label-studio-url",
        default=os.environ.get("LABEL_STUDIO_URL"),
        help="Label Studio base URL, for uploaded files (env LABEL_STUDIO_URL)",
    )
    s.add_argument(
        "--label-studio-token",
        default=os.environ.get("LABEL_STUDIO_API_KEY"),
        help="personal access token or legacy token (env LABEL_STUDIO_API_KEY)",
    )
    s.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="also fetch http(s) images from this host (repeatable)",
    )
    s.add_argument(
        "--local-files-root",
        default=os.environ.get("LOCAL_FILES_DOCUMENT_ROOT"),
        help="read Label Studio local-storage files from this folder directly",
    )
    s.add_argument(
        "--max-image-mb",
        type=size_mb,
        default=os.environ.get(MAX_MB_ENV) or str(DEFAULT_MAX_MB),
        help=f"refuse task files (images, downloaded videos) larger than this (env {MAX_MB_ENV}, "
        f"default {DEFAULT_MAX_MB:g})",
    )
    s.add_argument("--score-threshold", type=float, default=0.5)
    s.add_argument("--mask-threshold", type=float, default=0.5)
    s.add_argument("--cache-size", type=int, default=4, help="encoded images kept for clicks")
    s.add_argument(
        "--max-in-flight",
        type=int,
        default=4,
        help="requests handled at once (the rest wait; bounds memory under many clients)",
    )
    s.add_argument("--log-level", default="info")
    return parser


def model_version(checkpoint: str | None, config: str) -> str:
    """A readable version string: config plus checkpoint file or hub id."""
    name = Path(checkpoint).stem if checkpoint and os.path.exists(checkpoint) else checkpoint
    return f"sam3-{config}" + (f"-{name}" if name else "")


def make_backend(args: argparse.Namespace, predictor=None) -> Backend:
    """Load the predictor (unless given) and wire the backend from parsed arguments."""
    if predictor is None:
        from sam3_core import ImagePredictor

        predictor = ImagePredictor.from_pretrained(
            args.checkpoint, config=args.config, device=args.device, precision=args.precision
        )
    fetcher = ImageFetcher(
        args.label_studio_url,
        args.label_studio_token,
        tuple(args.allow_host),
        args.local_files_root,
        max_mb=args.max_image_mb,
    )
    settings = Settings(
        args.score_threshold, args.mask_threshold, args.cache_size, args.max_in_flight
    )
    backend = Backend(predictor, model_version(args.checkpoint, args.config), fetcher, settings)
    attach_video(backend)
    return backend


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sam3-labelstudio`."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    if args.basic_auth and ":" not in args.basic_auth:
        print("--basic-auth must be USER:PASS", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.basic_auth:
        log.warning(
            "listening on %s without --basic-auth: anyone who can reach it may use it", args.host
        )
    import uvicorn

    from sam3_labelstudio.memory import limit_arenas
    from sam3_labelstudio.server import create_app

    limit_arenas()  # before the request threads exist: a flat RSS under load

    log.info("loading SAM 3 (%s, %s)...", args.config, args.checkpoint or "facebook/sam3")
    backend = make_backend(args)
    from sam3_core.device import precision_note

    note = precision_note(backend.predictor.device, args.precision)
    if note:
        log.warning(note)
    log.info(
        "model %s ready; listening on http://%s:%d", backend.model_version, args.host, args.port
    )
    app = create_app(backend, args.basic_auth)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


if __name__ == "__main__":
    sys.exit(main())
