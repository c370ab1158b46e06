"""Option groups of `sam3-labelstudio` shared by its commands: model, Label Studio and file
sources, embedding store; each with the object it builds (predictor, fetcher, store)."""

from __future__ import annotations

import argparse
import logging
import os

from sam3_core.cli.args import parse_number
from sam3_core.store import STORE_ENV
from sam3_labelstudio.images import DEFAULT_MAX_MB, MAX_MB_ENV, ImageFetcher

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


def add_model_options(s: argparse.ArgumentParser) -> None:
    """--checkpoint, --config, --device, --precision."""
    s.add_argument(
        "--checkpoint", default=None, help="local file or hub id (default facebook/sam3)"
    )
    s.add_argument(
        "--config",
        default=None,
        help="model config name (default: picked from the checkpoint)",
    )
    s.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    s.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="fp32 (default, exact); bf16 is faster on recent GPUs and AMX CPUs only (a warning "
        "is logged when the choice is slow or inexact on this device)",
    )


def add_source_options(s: argparse.ArgumentParser) -> None:
    """Where task files come from: Label Studio (URL, token), allowed hosts, a local root."""
    add_connection_options(s)
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


def add_connection_options(s: argparse.ArgumentParser) -> None:
    """Which Label Studio, with which token (both from the environment by default)."""
    s.add_argument(
        "--label-studio-url",
        default=os.environ.get("LABEL_STUDIO_URL"),
        help="Label Studio base URL, for uploaded files (env LABEL_STUDIO_URL)",
    )
    s.add_argument(
        "--label-studio-token",
        default=os.environ.get("LABEL_STUDIO_API_KEY"),
        help="personal access token or legacy token; prefer env LABEL_STUDIO_API_KEY (a "
        "command line is visible to every user in `ps`)",
    )


def make_fetcher(args: argparse.Namespace) -> ImageFetcher:
    """The ImageFetcher of the source options."""
    return ImageFetcher(
        args.label_studio_url,
        args.label_studio_token,
        tuple(args.allow_host),
        args.local_files_root,
        max_mb=args.max_image_mb,
    )


def add_store_options(s: argparse.ArgumentParser, required: bool = False) -> None:
    """Where encoded images are kept: memory (always), a folder (optional, shared)."""
    default = os.environ.get(STORE_ENV)
    s.add_argument(
        "--embedding-store",
        default=default,
        required=required and not default,
        metavar="DIR",
        help="keep image embeddings in this folder (shared with `sam3 embed`, napari and "
        f"FiftyOne; `sam3-labelstudio embed` fills it ahead); env {STORE_ENV}",
    )
    s.add_argument(
        "--memory-mb",
        type=parse_number(float, 0.0),
        default=2048.0,
        help="memory for encoded images, most recent kept (default 2048, about 13 full-size "
        "images; 0: none, every click reads the store folder)",
    )
    s.add_argument("--cache-size", type=int, default=None, help=argparse.SUPPRESS)  # old name


def open_store(args: argparse.Namespace):
    """The embedding store of the parsed options (a usage error names a bad folder)."""
    from sam3_core.store import EmbeddingStore, StoreError

    mb = args.memory_mb
    if getattr(args, "cache_size", None) is not None:  # the old `--cache-size N` (images)
        log.warning("--cache-size is replaced by --memory-mb (about 150 MB per image): using it")
        mb = max(1, args.cache_size) * 150.0
    try:
        return EmbeddingStore(args.embedding_store, memory_bytes=int(mb * 2**20))
    except StoreError as exc:
        raise SystemExit(f"--embedding-store: {exc}") from None


def load_predictor(args: argparse.Namespace):
    """The ImagePredictor of the model options, on the store of the store options."""
    from sam3_core import ImagePredictor
    from sam3_core.store import StoreError

    store = open_store(args)  # a bad folder fails before the model loads
    try:
        return ImagePredictor.from_pretrained(
            args.checkpoint, config=args.config, device=args.device, precision=args.precision,
            store=store,
        )  # fmt: skip
    except StoreError as exc:  # another model's store folder
        raise SystemExit(f"--embedding-store: {exc}") from None


def add_thresholds_option(s: argparse.ArgumentParser) -> None:
    """--thresholds FILE: per-concept score thresholds (`sam3 eval` writes them)."""
    s.add_argument(
        "--thresholds",
        default=None,
        metavar="FILE",
        help="per-concept score thresholds (a thresholds JSON, e.g. from `sam3 eval`): they "
        "replace --score-threshold for image concepts",
    )


def load_thresholds_option(args: argparse.Namespace):
    """The Thresholds of --thresholds, or None; a bad file is a usage error naming it."""
    if not getattr(args, "thresholds", None):
        return None
    from sam3_core.metrics.thresholds import ThresholdsError, load_thresholds

    try:
        return load_thresholds(args.thresholds)
    except ThresholdsError as exc:
        raise SystemExit(f"--thresholds: {exc}") from None
