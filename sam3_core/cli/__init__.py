"""`sam3` command line: one module per subcommand, each with `register(sub)` and its `run`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sam3_core.cli import embed, segment, track
from sam3_core.cli import eval as eval_cmd

COMMANDS = (
    segment,
    embed,
    track,
    eval_cmd,
)  # each module: register(sub) adds its parser with defaults(run=...)


def build_parser() -> argparse.ArgumentParser:
    """The `sam3` parser with every subcommand of COMMANDS."""
    parser = argparse.ArgumentParser(prog="sam3", description="SAM 3: segment anything by concept.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `sam3` console script; returns the exit code."""
    args = build_parser().parse_args(argv)  # no torch yet: --help and usage errors are quick
    from sam3_core.device import pick_device, precision_note
    from sam3_core.prompts import PromptError

    if hasattr(args, "precision"):
        note = precision_note(pick_device(args.device), args.precision)
        if note:
            print(f"sam3: note: {note}", file=sys.stderr)
    try:
        return args.run(args)
    except (PromptError, ValueError, RuntimeError) as err:
        print(f"sam3: error: {err}", file=sys.stderr)
        return 2
