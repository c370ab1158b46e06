"""The operators' forms and what their answers mean: inputs, defaults, progress, the result
panel."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fiftyone.operators import types

from .evaluation import INFO_KEY
from .labeling import Choices
from .predictors import CHECKPOINT_ENV, DEFAULT_CONFIG

if TYPE_CHECKING:
    from fiftyone.operators import ExecutionContext

    from .labeling import JobReport

OVERWRITE_LABEL = "Overwrite the output field if it exists"
SKIP_LABEL = "Skip samples already labeled (resume)"
FORM_CHOICES = Choices(f"tick '{OVERWRITE_LABEL}'", f"tick '{SKIP_LABEL}'")
REPORT_COUNTS = ("labeled", "skipped", "failed", "detections")
EXECUTION_STORE, STORE_KEY = "sam3", "embedding_store"  # per-dataset memory of the store folder


def model_inputs(
    ctx: ExecutionContext, inputs: types.Object, default_field: str, ray: bool, store: bool = True
) -> None:
    """Inputs shared by the labeling operators: output, thresholds, safety, model, where to run.

    The model config and the batch size sit under "Advanced options" (the checkpoint decides
    the model); `ray` adds the Ray cluster address (empty: run in the App's process); `store`
    the embedding store folder (default: the one last filled for this dataset).
    """
    params = ctx.params
    inputs.str("output_field", default=default_field, required=True, label="Output field")
    choices = types.RadioGroup()
    choices.add_choice("masks", label="Masks")
    choices.add_choice("boxes", label="Boxes")
    inputs.enum("output", choices.values(), default="masks", view=choices, label="Output")
    inputs.float("score_threshold", default=0.5, min=0.0, max=1.0, label="Score threshold")
    inputs.bool("overwrite", default=False, label=OVERWRITE_LABEL)
    inputs.bool("skip_labeled", default=False, label=SKIP_LABEL)
    checkpoint_input(inputs)
    calibrated = (ctx.dataset.info or {}).get(INFO_KEY, {}) if ctx.dataset else {}
    if ray and calibrated:  # labeling jobs take per-concept thresholds
        chosen = types.Dropdown()
        chosen.add_choice("", label="none: the score threshold above")
        for field in calibrated:
            chosen.add_choice(field, label=f"calibrated on '{field}'")
        inputs.enum(
            "thresholds_from",
            chosen.values(),
            default="",
            view=chosen,
            label="Per-concept thresholds (from 'SAM 3: evaluate')",
        )
    if store:
        inputs.str(
            "store",
            default=remembered_store(ctx),
            label="Embedding store (optional)",
            description="A folder of precomputed embeddings ('SAM 3: compute embeddings'); "
            "empty: none",
        )
    run_inputs(inputs, params, ray)


def run_inputs(inputs: types.Object, params: dict, ray: bool) -> None:
    """Where and how to run: Ray address, delegation; under "Advanced options" the model
    config, the batch size and the number of Ray workers."""
    if ray:
        inputs.str(
            "ray",
            label="Ray cluster (optional)",
            description="'auto' or host:port to run on a Ray cluster; empty: in this process",
        )
    inputs.bool("delegate", default=False, label="Delegate (run in the background)")
    inputs.bool("advanced", default=False, label="Show advanced options")
    if params.get("advanced"):
        inputs.str(
            "config_name",
            default="",
            label="Model config (optional)",
            description="Empty: the checkpoint says; a sam3_core preset (e.g. 'sam3') only for "
            "a checkpoint saved without one",
        )
        inputs.int("batch_size", default=4, min=1, label="Batch size (images per backbone pass)")
        if ray:
            inputs.int("workers", min=1, label="Ray workers (empty: one per GPU or CPU)")


def checkpoint_input(inputs: types.Object) -> None:
    """The checkpoint field: a local file or hub id, $SAM3_CHECKPOINT by default."""
    inputs.str(
        "checkpoint",
        default=os.environ.get(CHECKPOINT_ENV, ""),
        label="Checkpoint",
        description=f"Local file or hub id; empty: facebook/sam3 (or ${CHECKPOINT_ENV})",
    )


def remembered_store(ctx: ExecutionContext) -> str:
    """The embedding store folder last filled for this dataset ("" if none)."""
    if ctx.dataset is None:
        return ""
    return ctx.store(EXECUTION_STORE).get(STORE_KEY) or ""


def remember_store(ctx: ExecutionContext, folder: str) -> None:
    """Record `folder` as this dataset's embedding store (the forms' default from now on)."""
    ctx.store(EXECUTION_STORE).set(STORE_KEY, str(folder))


def model_settings(params: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint, config, threshold and output from the form (blank fields: defaults)."""
    return {
        "checkpoint": params.get("checkpoint") or os.environ.get(CHECKPOINT_ENV) or None,
        "config_name": params.get("config_name") or DEFAULT_CONFIG,
        "confidence_thresh": float(params.get("score_threshold", 0.5)),
        "output": params.get("output") or "masks",
        "store": (params.get("store") or "").strip() or None,
    }


def job_kwargs(ctx: ExecutionContext) -> dict[str, Any]:
    """The keywords `label_view` and `label_from_exemplars` share, from the form: output,
    thresholds, model, safety (overwrite / skip labeled), where to run, progress."""
    p = ctx.params
    settings = model_settings(p)
    return {
        "output": settings["output"],
        "score_threshold": settings["confidence_thresh"],
        "checkpoint": settings["checkpoint"],
        "config": settings["config_name"],
        "batch_size": int(p.get("batch_size") or 4),
        "overwrite": bool(p.get("overwrite")),
        "skip_labeled": bool(p.get("skip_labeled")),
        "ray": (p.get("ray") or "").strip() or None,
        "workers": p.get("workers") or None,
        "store": settings["store"],
        "thresholds": thresholds_from(ctx),
        "progress": app_progress(ctx),
        "choices": FORM_CHOICES,
    }


def thresholds_from(ctx: ExecutionContext) -> dict | None:
    """The calibrated thresholds the form picked (kept in the dataset's info), or None."""
    field = ctx.params.get("thresholds_from")
    return (ctx.dataset.info or {}).get(INFO_KEY, {}).get(field) if field else None


def concepts_from(params: dict[str, Any]) -> list[str]:
    """The non-blank concepts typed in the `concepts` list input."""
    return [c.strip() for c in params.get("concepts") or [] if c and c.strip()]


def app_progress(ctx: ExecutionContext) -> Callable[[float, str], None] | None:
    """A progress callback for delegated runs (the App polls it), else None."""
    if not ctx.delegated:
        return None
    return lambda fraction, label: ctx.set_progress(progress=fraction, label=label)


def finish(ctx: ExecutionContext, report: JobReport) -> dict:
    """Reload the App after an immediate run; the report as the operator's result."""
    if not ctx.delegated:
        ctx.trigger("reload_dataset")
    return report.as_dict()


def report_outputs(results: dict | None, counts: tuple[str, ...] = REPORT_COUNTS) -> types.Property:
    """The result panel: the counts, and the first error only when there was one."""
    outputs = types.Object()
    for key in counts:
        outputs.int(key, label=key.capitalize())
    if (results or {}).get("first_error"):
        outputs.str("first_error", label="First error")
    return types.Property(outputs)
