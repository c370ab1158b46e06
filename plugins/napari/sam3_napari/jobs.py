"""Jobs the widget runs: each is (work for the worker thread, update of layers on the GUI thread).

The work calls sam3_core only (through `Engine`); the GUI part writes into our Labels layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from sam3_napari import layers as L
from sam3_napari.convert import masks_to_labels
from sam3_napari.engine import ModelChoice
from sam3_napari.plane import PlaneContext, fixed_stack_index

if TYPE_CHECKING:
    from sam3_napari.widget import Sam3Widget

Job = tuple[Callable[[], Any], Callable[[Any], None]]


def _concept_output(widget: Sam3Widget, ctx: PlaneContext, concept: str):
    prompt = concept or "exemplar"
    return L.output_layer(widget.viewer, ctx.image, "concept", prompt, f"SAM3 {prompt}", ctx.axis)


def concept_job(widget: Sam3Widget, ctx: PlaneContext, choice: ModelChoice) -> Job:
    """Every instance of the typed concept and/or exemplar boxes, in the chosen scope."""
    concept = widget.concept.value.strip()
    shapes, scope = widget.exemplars.value, widget.scope.value
    engine, report, score = widget.engine, widget._report, float(widget.score.value)
    if scope.startswith("whole stack"):
        return _stack_job(widget, ctx, choice, concept)
    exemplars = L.exemplars_on_plane(shapes, ctx.image, ctx.index, ctx.axis)
    if not concept and not exemplars:
        raise ValueError(
            "no prompt: type a concept (e.g. 'nucleus') or draw exemplar boxes on this plane"
        )

    def done(labels: np.ndarray) -> None:
        layer = _concept_output(widget, ctx, concept)
        L.write_plane(layer, ctx.index, labels)
        widget.status.value = f"{int(labels.max())} instance(s) in '{layer.name}'"

    if scope.startswith("tiled"):
        size, overlap = int(widget.tile_size.value), int(widget.overlap.value)

        def tiled() -> np.ndarray:
            return engine.segment_tiled(
                choice, ctx.raw(), concept, exemplars, size, overlap, score, ctx.channels, report
            )

        return tiled, done

    def plane() -> np.ndarray:
        inst = engine.segment_concept(choice, ctx.key, ctx.rgb8, concept, exemplars, score, report)
        return masks_to_labels(inst.masks, inst.scores)

    return plane, done


def _stack_job(widget: Sam3Widget, ctx: PlaneContext, choice: ModelChoice, concept: str) -> Job:
    """The whole z/t axis through `sam3_core.stacks.segment_stack` (ids linked across slices)."""
    fixed, n = fixed_stack_index(ctx)
    shapes = widget.exemplars.value
    per_slice = {
        z: ex
        for z in range(n)
        if (ex := L.exemplars_on_plane(shapes, ctx.image, (*fixed, z), ctx.axis))
    }
    if not concept and not per_slice:
        raise ValueError("no prompt: type a concept or draw exemplar boxes on some slice")
    engine, report, method = widget.engine, widget._report, widget.stack_method.value
    score = float(widget.score.value)

    def work() -> np.ndarray:
        from sam3_core.stacks import segment_stack

        predictor = engine.predictor(choice, report)
        report(0, n, "reading the stack")
        stack = np.stack([ctx.rgb8((*fixed, z)) for z in range(n)])

        def progress(done: int, total: int) -> None:
            engine.check()
            report(done, total, f"slice {done}/{total}")

        result = segment_stack(
            predictor, stack, concept or None, per_slice or None, method=method,
            score_threshold=score, progress=progress,
        )  # fmt: skip
        return result.labels

    def done(volume: np.ndarray) -> None:
        layer = _concept_output(widget, ctx, concept)
        layer.data[fixed] = volume
        layer.refresh()
        widget.status.value = f"{len(np.unique(volume)) - 1} object(s) through {n} slices"

    return work, done


def object_job(
    widget: Sam3Widget, ctx: PlaneContext, choice: ModelChoice, xy: np.ndarray, labels: np.ndarray
) -> Job:
    """One object from clicks; later clicks on the same plane refine it (its mask is reused)."""
    current = widget._object
    same = current is not None and current["key"] == ctx.key
    mask_input = current.get("logits") if same else None
    engine, report = widget.engine, widget._report

    def work() -> Any:
        return engine.segment_object(choice, ctx.key, ctx.rgb8, xy, labels, mask_input, report)

    def done(inst: Any) -> None:
        layer = L.output_layer(
            widget.viewer, ctx.image, "objects", "clicks", "SAM3 objects", ctx.axis
        )
        if widget._object is None or widget._object["key"] != ctx.key:
            widget._object = {"key": ctx.key, "id": int(np.max(layer.data)) + 1}
        widget._object["logits"] = inst.low_res_logits[0]
        L.write_object(layer, ctx.index, inst.masks[0], widget._object["id"])
        widget.status.value = (
            f"object {widget._object['id']}: score {float(inst.scores[0]):.2f}; "
            "click to refine, or 'Next object'"
        )

    return work, done
