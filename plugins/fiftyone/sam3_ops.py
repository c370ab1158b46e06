"""FiftyOne operators: auto-label by concepts, label from exemplars. `execute` is a thin call."""

from __future__ import annotations

import os

import fiftyone.core.labels as fol
import fiftyone.operators as foo
from fiftyone.operators import types

CHECKPOINT_ENV = "SAM3_CHECKPOINT"  # default checkpoint (path or hub id) for every operator


def model_inputs(inputs: types.Object, default_field: str) -> None:
    """Inputs shared by the labeling operators: output, thresholds, safety, model, execution."""
    inputs.str("output_field", default=default_field, required=True, label="Output field")
    choices = types.RadioGroup()
    choices.add_choice("masks", label="Masks")
    choices.add_choice("boxes", label="Boxes")
    inputs.enum("output", choices.values(), default="masks", view=choices, label="Output")
    inputs.float("score_threshold", default=0.5, min=0.0, max=1.0, label="Score threshold")
    inputs.int("batch_size", default=4, min=1, label="Batch size (images per backbone pass)")
    inputs.bool("overwrite", default=False, label="Overwrite the output field if it exists")
    inputs.bool("skip_labeled", default=False, label="Skip samples already labeled (resume)")
    inputs.str(
        "checkpoint",
        default=os.environ.get(CHECKPOINT_ENV, ""),
        label="Checkpoint",
        description=f"Local file or hub id; empty: facebook/sam3 (or ${CHECKPOINT_ENV})",
    )
    inputs.str("config_name", default="sam3", label="Model config")
    inputs.bool("delegate", default=False, label="Delegate (run in the background)")


def model_config(params: dict, **prompts) -> dict:
    """Sam3Model config dict from operator params plus prompt settings."""
    return {
        "checkpoint": params.get("checkpoint") or os.environ.get(CHECKPOINT_ENV) or None,
        "config_name": params.get("config_name") or "sam3",
        "confidence_thresh": float(params.get("score_threshold", 0.5)),
        "output": params.get("output") or "masks",
        **prompts,
    }


def run(ctx, view, config: dict) -> dict:
    """Label `view` with a Sam3Model built from `config`; progress to the App; a report dict."""
    from .jobs import label_samples
    from .model import Sam3Model

    p = ctx.params
    report = label_samples(
        view,
        Sam3Model(config),
        p["output_field"],
        batch_size=int(p.get("batch_size") or 4),
        overwrite=bool(p.get("overwrite")),
        skip_labeled=bool(p.get("skip_labeled")),
        progress=app_progress(ctx),
    )
    return finish(ctx, report)


def app_progress(ctx):
    """A progress callback for delegated runs (the App polls it), else None."""
    if not ctx.delegated:
        return None
    return lambda fraction, label: ctx.set_progress(progress=fraction, label=label)


def finish(ctx, report) -> dict:
    """Reload the App after an immediate run; the report as the operator's result."""
    if not ctx.delegated:
        ctx.trigger("reload_dataset")
    return report.as_dict()


def concepts_from(params: dict) -> list[str]:
    """The non-blank concepts typed in the `concepts` list input."""
    return [c for c in params.get("concepts") or [] if c and c.strip()]


def operator_config(name: str, label: str, description: str) -> foo.OperatorConfig:
    """Config shared by our operators: dynamic inputs, immediate or delegated execution."""
    return foo.OperatorConfig(
        name=name,
        label=label,
        description=description,
        dynamic=True,
        allow_immediate_execution=True,
        allow_delegated_execution=True,
    )


def report_outputs() -> types.Property:
    """The result panel: counts and the first error."""
    outputs = types.Object()
    for key in ("labeled", "skipped", "failed", "detections"):
        outputs.int(key, label=key.capitalize())
    outputs.str("first_error", label="First error")
    return types.Property(outputs)


class _Sam3Operator(foo.Operator):
    """Shared delegation and output behaviour."""

    def resolve_delegation(self, ctx) -> bool:
        return bool(ctx.params.get("delegate", False))

    def resolve_output(self, ctx) -> types.Property:
        return report_outputs()


class AutoLabelConcepts(_Sam3Operator):
    """Find every instance of each concept (noun phrase) in the target samples."""

    @property
    def config(self) -> foo.OperatorConfig:
        return operator_config(
            "auto_label_concepts",
            "SAM 3: auto-label by concepts",
            "Segment every instance of the given concepts",
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        ctx.target_view()  # offers dataset / current view / selected samples
        inputs.list("concepts", types.String(), required=True, label="Concepts (noun phrases)")
        model_inputs(inputs, "sam3")
        return types.Property(inputs, view=types.View(label="SAM 3: auto-label by concepts"))

    def execute(self, ctx) -> dict:
        concepts = concepts_from(ctx.params)
        if not concepts:
            raise ValueError("Give at least one concept, e.g. 'person' or 'yellow school bus'.")
        return run(ctx, ctx.target_view(), model_config(ctx.params, classes=concepts))


class LabelFromExemplars(_Sam3Operator):
    """Find every instance like the boxed exemplars (plus optional text) in each image."""

    @property
    def config(self) -> foo.OperatorConfig:
        return operator_config(
            "label_from_exemplars",
            "SAM 3: label from exemplars",
            "Use boxes of a Detections field (or selected labels) as exemplars",
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        ctx.target_view()
        schema = (
            ctx.dataset.get_field_schema(embedded_doc_type=fol.Detections) if ctx.dataset else {}
        )
        fields = types.Dropdown()
        for name in schema:
            fields.add_choice(name, label=name)
        inputs.enum(
            "exemplar_field",
            fields.values(),
            required=True,
            view=fields,
            label="Exemplar boxes field",
        )
        if ctx.selected_labels:
            inputs.bool(
                "use_selected_labels",
                default=True,
                label=f"Only the {len(ctx.selected_labels)} selected labels are positives",
            )
        inputs.str("negative_label", label="Label whose boxes are negatives (optional)")
        inputs.str("negative_tag", label="Label tag marking negative boxes (optional)")
        inputs.str("text", label="Concept text (optional; applies to every image)")
        model_inputs(inputs, "sam3_exemplars")
        return types.Property(inputs, view=types.View(label="SAM 3: label from exemplars"))

    def execute(self, ctx) -> dict:
        p = ctx.params
        field = p["exemplar_field"]
        view = ctx.target_view()
        ids = None
        if p.get("use_selected_labels") and ctx.selected_labels:
            ids = [s["label_id"] for s in ctx.selected_labels if s.get("field") == field]
        text = (p.get("text") or "").strip()
        if not text:  # exemplars prompt the image they are drawn in: label only those images
            view = view.exists(field)
            if ids is not None:
                view = view.select([s["sample_id"] for s in ctx.selected_labels])
        config = model_config(
            p,
            classes=[text] if text else [],
            prompt_field=field,
            negative_label=p.get("negative_label") or None,
            negative_tag=p.get("negative_tag") or None,
            exemplar_ids=ids,
            join_exemplars=True,
        )
        return run(ctx, view, config)


class TrackVideos(_Sam3Operator):
    """Track concepts (and boxes drawn on a frame) through the target videos."""

    @property
    def config(self) -> foo.OperatorConfig:
        return operator_config(
            "track_videos",
            "SAM 3: track in videos",
            "Track every instance of concepts, or boxed objects, through videos",
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        ctx.target_view()
        inputs.list("concepts", types.String(), label="Concepts to track (noun phrases)")
        inputs.str("prompt_field", label="Frame field whose boxes start objects (optional)")
        inputs.int("prompt_frame", default=1, min=1, label="Frame number of the prompts")
        model_inputs(inputs, "sam3_tracks")
        return types.Property(inputs, view=types.View(label="SAM 3: track in videos"))

    def execute(self, ctx) -> dict:
        from .predictors import cached_predictor
        from .tracking import track_samples

        p = ctx.params
        concepts = concepts_from(p)
        if not concepts and not p.get("prompt_field"):
            raise ValueError("Give concepts to track and/or a prompt_field with boxes.")
        cfg = model_config(p)
        report = track_samples(
            ctx.target_view(),
            cached_predictor("video", cfg["checkpoint"], cfg["config_name"]),
            p["output_field"],
            concepts,
            prompt_field=p.get("prompt_field") or None,
            prompt_frame=int(p.get("prompt_frame") or 1),
            output=cfg["output"],
            overwrite=bool(p.get("overwrite")),
            skip_labeled=bool(p.get("skip_labeled")),
            score_threshold=cfg["confidence_thresh"],
            progress=app_progress(ctx),
        )
        return finish(ctx, report)
