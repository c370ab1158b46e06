"""FiftyOne operators: auto-label by concepts, label from exemplars, track in videos.

Each `execute` is a thin call into this package's Python API (`label_view`,
`label_from_exemplars`, `track_samples`); the forms live in `forms`. Embeddings and evaluation
have their own modules.
"""

from __future__ import annotations

import fiftyone.core.labels as fol
import fiftyone.operators as foo
from fiftyone.operators import types

from . import forms


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


class Sam3Operator(foo.Operator):
    """Shared delegation and result panel."""

    def resolve_delegation(self, ctx) -> bool:
        return bool(ctx.params.get("delegate", False))

    def resolve_output(self, ctx) -> types.Property:
        return forms.report_outputs(ctx.results)


class AutoLabelConcepts(Sam3Operator):
    """Find every instance of each concept (noun phrase) in the target samples, as a dataset job
    in the App's process or on a Ray cluster."""

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
        forms.model_inputs(ctx, inputs, "sam3", ray=True)
        return types.Property(inputs, view=types.View(label="SAM 3: auto-label by concepts"))

    def execute(self, ctx) -> dict:
        from .dataset_jobs import label_view

        p = ctx.params
        view = ctx.target_view()
        report = label_view(
            view, p["output_field"], forms.concepts_from(p), **forms.job_kwargs(ctx)
        )
        return forms.finish(ctx, report)


class LabelFromExemplars(Sam3Operator):
    """Find every instance like the boxed exemplars (plus optional text) in each image, as a
    dataset job in the App's process or on a Ray cluster."""

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
        forms.model_inputs(ctx, inputs, "sam3_exemplars", ray=True)
        return types.Property(inputs, view=types.View(label="SAM 3: label from exemplars"))

    def execute(self, ctx) -> dict:
        from .exemplar_jobs import label_from_exemplars

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
        report = label_from_exemplars(
            view,
            p["output_field"],
            field,
            concepts=[text] if text else [],
            negative_label=p.get("negative_label") or None,
            negative_tag=p.get("negative_tag") or None,
            exemplar_ids=ids,
            **forms.job_kwargs(ctx),
        )
        return forms.finish(ctx, report)


class TrackVideos(Sam3Operator):
    """Track concepts (and boxes drawn on a frame) through the target videos; on a dataset of
    images the form says it needs videos and offers nothing to run."""

    @property
    def config(self) -> foo.OperatorConfig:
        return operator_config(
            "track_videos",
            "SAM 3: track in videos",
            "Track every instance of concepts, or boxed objects, through videos",
        )

    def resolve_placement(self, ctx):
        """A button over the samples grid, on video datasets only."""
        if ctx.dataset is None or ctx.dataset.media_type != "video":
            return None
        return types.Placement(
            types.Places.SAMPLES_GRID_SECONDARY_ACTIONS,
            types.Button(label="SAM 3: track in videos"),
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        if ctx.dataset is None or ctx.dataset.media_type != "video":
            kind = ctx.dataset.media_type if ctx.dataset else "no"
            inputs.view(
                "needs_videos",
                types.Error(
                    label="This operator tracks objects through videos",
                    description=f"This dataset holds {kind} samples: open a video dataset, or "
                    "use 'SAM 3: auto-label by concepts' for images.",
                ),
            )
            inputs.str("video_dataset_required", required=True, view=types.HiddenView())
            return types.Property(inputs, view=types.View(label="SAM 3: track in videos"))
        ctx.target_view()
        inputs.list("concepts", types.String(), label="Concepts to track (noun phrases)")
        inputs.str("prompt_field", label="Frame field whose boxes start objects (optional)")
        inputs.int("prompt_frame", default=1, min=1, label="Frame number of the prompts")
        forms.model_inputs(ctx, inputs, "sam3_tracks", ray=False, store=False)
        return types.Property(inputs, view=types.View(label="SAM 3: track in videos"))

    def execute(self, ctx) -> dict:
        from .predictors import cached_predictor
        from .tracking import track_samples

        p = ctx.params
        if ctx.dataset is None or ctx.dataset.media_type != "video":
            raise ValueError("SAM 3 tracking needs a video dataset; this one holds images.")
        concepts = forms.concepts_from(p)
        if not concepts and not p.get("prompt_field"):
            raise ValueError("Give concepts to track and/or a prompt_field with boxes.")
        cfg = forms.model_settings(p)
        report = track_samples(
            ctx.target_view(),
            lambda: cached_predictor("video", cfg["checkpoint"], cfg["config_name"]),
            p["output_field"],
            concepts,
            prompt_field=p.get("prompt_field") or None,
            prompt_frame=int(p.get("prompt_frame") or 1),
            output=cfg["output"],
            overwrite=bool(p.get("overwrite")),
            skip_labeled=bool(p.get("skip_labeled")),
            score_threshold=cfg["confidence_thresh"],
            progress=forms.app_progress(ctx),
            choices=forms.FORM_CHOICES,
        )
        return forms.finish(ctx, report)
