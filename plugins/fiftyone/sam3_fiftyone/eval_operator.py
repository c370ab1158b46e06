"""The operator that scores a prediction field against ground truth (`evaluate_view`): a table
per concept and a plot in the App, calibrated thresholds kept in the dataset's info."""

from __future__ import annotations

import fiftyone.core.labels as fol
import fiftyone.operators as foo
from fiftyone.operators import types


class EvaluateLabels(foo.Operator):
    """Score a prediction field against a ground-truth field on the target view (SA-Co cgF1,
    pmF1, IL_MCC, AP per concept), optionally calibrating per-concept thresholds."""

    @property
    def config(self) -> foo.OperatorConfig:
        return foo.OperatorConfig(
            name="evaluate_labels",
            label="SAM 3: evaluate against ground truth",
            description="Per-concept cgF1 / pmF1 / IL_MCC / AP, and calibrated thresholds",
            dynamic=True,
        )

    def resolve_input(self, ctx) -> types.Property:
        inputs = types.Object()
        ctx.target_view()
        schema = ctx.dataset.get_field_schema(embedded_doc_type=fol.Detections) or {}
        fields = types.Dropdown()
        for name in schema:
            fields.add_choice(name, label=name)
        inputs.enum("pred_field", fields.values(), required=True, view=fields, label="Predictions")
        inputs.enum("gt_field", fields.values(), required=True, view=fields, label="Ground truth")
        inputs.bool(
            "exhaustive",
            default=True,
            label="Ground truth lists every instance of every concept on its samples",
        )
        inputs.bool("calibrate", default=True, label="Calibrate a threshold per concept")
        if not ctx.params.get("calibrate", True):
            inputs.float("threshold", default=0.5, min=0.0, max=1.0, label="Score threshold")
        return types.Property(inputs, view=types.View(label="SAM 3: evaluate"))

    def execute(self, ctx) -> dict:
        from .evaluation import INFO_KEY, evaluate_view

        p = ctx.params
        result = evaluate_view(
            ctx.target_view(),
            p["pred_field"],
            p["gt_field"],
            exhaustive=bool(p.get("exhaustive", True)),
            threshold=float(p.get("threshold", 0.5)),
            calibrate=bool(p.get("calibrate", True)),
        )
        out = {"table": result.table(), "plot": result.plot_data()}
        if result.thresholds is not None:
            out["stored"] = f"dataset.info['{INFO_KEY}']['{p['pred_field']}']"
        return out

    def resolve_output(self, ctx) -> types.Property:
        from .evaluation import TABLE_COLUMNS

        outputs = types.Object()
        table = types.TableView()
        for column in TABLE_COLUMNS:
            table.add_column(column, label=column)
        outputs.list("table", types.Object(), label="Per concept", view=table)
        outputs.plot(
            "plot",
            label="cgF1 against the score threshold",
            layout={
                "height": 320,
                "xaxis": {"title": {"text": "score threshold"}},
                "yaxis": {"title": {"text": "cgF1"}, "range": [0, 105]},
            },
        )
        if (ctx.results or {}).get("stored"):
            outputs.str("stored", label="Thresholds kept in")
        return types.Property(outputs)
