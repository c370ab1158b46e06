"""The operator that fills an embedding store for the target images (`precompute_embeddings`)."""

from __future__ import annotations

import fiftyone.operators as foo
from fiftyone.operators import types

from . import forms
from .operators import Sam3Operator, operator_config


class ComputeEmbeddings(Sam3Operator):
    """Compute the embedding of every target image once, into a store folder that the other
    operators then read instead of running the backbone (here or on a Ray cluster)."""

    COUNTS = ("stored", "skipped", "failed", "entries")

    @property
    def config(self) -> foo.OperatorConfig:
        return operator_config(
            "compute_embeddings",
            "SAM 3: compute embeddings",
            "Store each image's embedding once; labeling then skips the backbone",
        )

    def resolve_input(self, ctx) -> types.Property:
        from .embeddings import default_store

        inputs = types.Object()
        ctx.target_view()
        default = forms.remembered_store(ctx) or (
            str(default_store(ctx.dataset)) if ctx.dataset else ""
        )
        inputs.str("store", default=default, required=True, label="Embedding store folder")
        forms.checkpoint_input(inputs)
        forms.run_inputs(inputs, ctx.params, ray=True)
        return types.Property(inputs, view=types.View(label="SAM 3: compute embeddings"))

    def resolve_output(self, ctx) -> types.Property:
        outputs = forms.report_outputs(ctx.results, self.COUNTS)
        outputs.type.float("mb_per_image", label="MB per image")
        return outputs

    def execute(self, ctx) -> dict:
        from .embeddings import precompute_embeddings

        p = ctx.params
        settings = forms.model_settings(p)
        report = precompute_embeddings(
            ctx.target_view(),
            p["store"],
            checkpoint=settings["checkpoint"],
            config=settings["config_name"],
            batch_size=int(p.get("batch_size") or 4),
            ray=(p.get("ray") or "").strip() or None,
            workers=p.get("workers") or None,
            progress=forms.app_progress(ctx),
        )
        forms.remember_store(ctx, p["store"])
        return forms.finish(ctx, report)
