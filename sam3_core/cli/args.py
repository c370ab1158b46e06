"""Argument types and shared options of the `sam3` subcommands (usage errors, never tracebacks)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from sam3_core.config import CONFIGS

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


def parse_ray_address(text: str) -> str:
    """`--ray` value: auto (join a running cluster or start one here), local, HOST:PORT or
    ray://HOST:PORT."""
    if text in ("auto", "local") or ":" in text:
        return text
    raise argparse.ArgumentTypeError(
        f"--ray {text!r}: expected auto, local, HOST:PORT or ray://HOST:PORT (a bare --ray means "
        "auto; write --ray=ADDRESS or put --ray after the inputs)"
    )


def add_job_args(p: argparse.ArgumentParser) -> None:
    """Options of commands that run as a dataset job (`sam3_core.jobs`): runner and resume."""
    p.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        type=parse_ray_address,
        metavar="ADDRESS",
        help="run on a Ray cluster: bare --ray (= auto) joins a running one or starts one here; "
        "or HOST:PORT (needs pip install 'sam3-tools[ray]')",
    )
    p.add_argument(
        "--workers",
        type=parse_positive_int,
        default=None,
        metavar="N",
        help="Ray workers (default: one per GPU, else one per CPU); needs --ray",
    )
    p.add_argument(
        "--restart",
        action="store_true",
        help="start over when --out holds a job with other settings (the old output is moved "
        "into --out/replaced-<time>/, never deleted)",
    )
    p.add_argument(
        "--retry-errors",
        action="store_true",
        help="segment again the images that failed in an earlier run of this job",
    )


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Options that pick the model: checkpoint, config, device, precision, hub token."""
    p.add_argument(
        "--checkpoint",
        default=None,
        help="local .safetensors/.pt file or hub repo id (default facebook/sam3)",
    )
    p.add_argument(
        "--config",
        default=None,
        choices=sorted(CONFIGS),
        help="model config (default: picked from the checkpoint; needed only for a custom model "
        "saved without its config)",
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
