"""The figures against the score threshold, saved as PNG: matplotlib when it is installed,
else a plain drawing with Pillow (a core dependency)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sam3_core.metrics.calibration import Curves
from sam3_core.metrics.thresholds import Thresholds

OVERALL = (("cgF1", 1.0), ("pmF1", 1.0), ("IL_MCC", 100.0), ("F1", 1.0))  # (metric, scale)
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MAX_CONCEPTS = len(COLORS)


def shown_concepts(curves: Curves) -> list[str]:
    """The concepts drawn one by one: those with the best peak cgF1, at most MAX_CONCEPTS."""
    peak = {
        c: float(np.max(m["cgF1"])) if len(curves.grid) else 0.0 for c, m in curves.concepts.items()
    }
    return sorted(peak, key=lambda c: -peak[c])[:MAX_CONCEPTS]


def plot_curves(curves: Curves, path: str | os.PathLike, chosen: Thresholds | None = None) -> Path:
    """Write a PNG: left, cgF1 / pmF1 / IL_MCC (x100) / F1 of all pairs against one threshold
    for every concept; right, each concept's cgF1 with its chosen threshold marked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return draw_with_pillow(curves, path, chosen)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for (metric, scale), color in zip(OVERALL, COLORS):
        label = metric if scale == 1.0 else f"{metric} x100"
        left.plot(curves.grid, curves.overall[metric] * scale, label=label, color=color)
    left.set(title="all concepts, one threshold", xlabel="score threshold", ylabel="percent")
    left.legend(loc="lower left")
    for concept, color in zip(shown_concepts(curves), COLORS):
        values = curves.concepts[concept]["cgF1"]
        right.plot(curves.grid, values, label=concept, color=color)
        if chosen is not None and concept in chosen.concepts:
            t = chosen.for_concept(concept)
            right.plot([t], [np.interp(t, curves.grid, values)], "o", color=color)
    right.set(title="cgF1 per concept (dot: chosen threshold)", xlabel="score threshold")
    if curves.concepts:
        right.legend(loc="lower left", fontsize="small")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_with_pillow(curves: Curves, path: Path, chosen: Thresholds | None) -> Path:
    """The left panel of `plot_curves` (all pairs) drawn with Pillow, with a text legend."""
    from PIL import Image, ImageDraw

    width, height, pad = 640, 400, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = pad, pad // 2, width - pad // 2, height - pad
    draw.rectangle([x0, y0, x1, y1], outline="black")
    lo, hi = (float(curves.grid[0]), float(curves.grid[-1])) if len(curves.grid) else (0.0, 1.0)
    span = max(hi - lo, 1e-9)

    def xy(t: float, v: float) -> tuple[float, float]:
        v = min(max(v, -100.0), 100.0)
        return x0 + (t - lo) / span * (x1 - x0), y1 - (v + 100.0) / 200.0 * (y1 - y0)

    draw.line([xy(lo, 0), xy(hi, 0)], fill="#cccccc")
    for (metric, scale), color in zip(OVERALL, COLORS):
        points = [xy(t, v * scale) for t, v in zip(curves.grid, curves.overall[metric])]
        if len(points) > 1:
            draw.line(points, fill=color, width=2)
    for i, ((metric, scale), color) in enumerate(zip(OVERALL, COLORS)):
        label = metric if scale == 1.0 else f"{metric} x100"
        draw.text((x0 + 8, y0 + 6 + 14 * i), label, fill=color)
    draw.text((x0, y1 + 6), f"{lo:.2f}", fill="black")
    draw.text((x1 - 30, y1 + 6), f"{hi:.2f}", fill="black")
    draw.text(((x0 + x1) // 2 - 50, y1 + 20), "score threshold", fill="black")
    draw.text((4, y0), "100", fill="black")
    draw.text((4, y1 - 10), "-100", fill="black")
    image.save(path, format="PNG")
    return path
