"""How good are the results on a user's own labels: SA-Co cgF1 / pmF1 / IL_MCC, COCO AP, and
per-concept score thresholds (calibrated, saved, applied).

The thresholds API loads with the package; the evaluation names load on first use (they
bring in scipy and pycocotools' evaluator).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sam3_core.lazy import lazy_exports
from sam3_core.metrics.thresholds import (
    Thresholds,
    ThresholdsError,
    apply_thresholds,
    keep_mask,
    load_thresholds,
    save_thresholds,
)

if TYPE_CHECKING:
    from sam3_core.metrics.calibration import Curves, calibrate, sweep
    from sam3_core.metrics.data import EvalDataError, EvalSet, regions_from_instances
    from sam3_core.metrics.evaluation import evaluate
    from sam3_core.metrics.loaders import load_eval_set
    from sam3_core.metrics.plot import plot_curves
    from sam3_core.metrics.report import format_table

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "EvalSet": "sam3_core.metrics.data",
        "EvalDataError": "sam3_core.metrics.data",
        "regions_from_instances": "sam3_core.metrics.data",
        "evaluate": "sam3_core.metrics.evaluation",
        "calibrate": "sam3_core.metrics.calibration",
        "sweep": "sam3_core.metrics.calibration",
        "Curves": "sam3_core.metrics.calibration",
        "load_eval_set": "sam3_core.metrics.loaders",
        "plot_curves": "sam3_core.metrics.plot",
        "format_table": "sam3_core.metrics.report",
    },
)

__all__ = [
    "Curves",
    "EvalDataError",
    "EvalSet",
    "Thresholds",
    "ThresholdsError",
    "apply_thresholds",
    "calibrate",
    "evaluate",
    "format_table",
    "keep_mask",
    "load_eval_set",
    "load_thresholds",
    "plot_curves",
    "regions_from_instances",
    "save_thresholds",
    "sweep",
]
