"""The evaluation report as a terminal table and as a JSON file."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

COLUMNS = (  # (header, key, format)
    ("threshold", "threshold", "{:.3f}"),
    ("pairs", "pairs", "{:d}"),
    ("pos", "positive_pairs", "{:d}"),
    ("gt", "gt", "{:d}"),
    ("pred", "pred", "{:d}"),
    ("cgF1", "cgF1", "{:.1f}"),
    ("cgF1@.5", "cgF1@0.5", "{:.1f}"),
    ("pmF1", "pmF1", "{:.1f}"),
    ("IL_MCC", "IL_MCC", "{:.3f}"),
    ("F1", "F1", "{:.1f}"),
    ("AP mask", "AP_mask", "{:.1f}"),
    ("AP box", "AP_box", "{:.1f}"),
)


def cell(figures: dict, key: str, fmt: str) -> str:
    """One formatted figure ("-" where it is missing or undefined)."""
    if key == "positive_pairs" and "IL_TP" in figures:
        value = figures["IL_TP"] + figures["IL_FN"]
    else:
        value = figures.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def format_table(report: dict) -> str:
    """A plain-text table: one row per concept, then "overall" (all pairs pooled).
    cgF1, pmF1, F1 and AP in percent, IoU 0.50:0.95 unless marked @.5."""
    rows = [(name, figures) for name, figures in report["concepts"].items()]
    rows.append(("overall", report["overall"]))
    headers = ["concept"] + [h for h, _, _ in COLUMNS]
    body = [[name] + [cell(f, key, fmt) for _, key, fmt in COLUMNS] for name, f in rows]
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))])

    rule = "-" * len(line(headers))
    return "\n".join([line(headers), rule, *(line(r) for r in body[:-1]), rule, line(body[-1])])


def plain(value):
    """A JSON-ready copy: numpy scalars and arrays to Python numbers and lists."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(report: dict, path: str | os.PathLike) -> Path:
    """Write the report as JSON (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(plain(report), indent=1) + "\n")
    os.replace(tmp, path)
    return path
