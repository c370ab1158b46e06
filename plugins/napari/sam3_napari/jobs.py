"""Jobs the widget runs: each is (work for the worker thread, update of layers on the GUI thread).

The work calls sam3_core only (through `Engine`); the GUI part writes into our Labels layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sam3_napari import layers as L
from sam3_napari.convert import masks_to_labels
from sam3_napari.engine import ModelChoice
from sam3_napari.plane import PlaneContext, fixed_stack_index

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import ComboBox, FloatSpinBox, Label, LineEdit, SpinBox

    from sam3_napari.engine import Engine


class JobHost(Protocol):
    """What a job reads from the widget (`Sam3Widget` is one) on the GUI thread."""

    viewer: napari.Viewer
    engine: Engine
    concept: LineEdit
    exemplars: ComboBox
    scope: ComboBox
    score: FloatSpinBox
    stack_method: ComboBox
    tile_size: SpinBox
    overlap: SpinBox
    status: Label
    current_object: dict | None  # the object being refined by clicks

    def report(self, done: int, total: int, message: str) -> None: ...


Job = tuple[Callable[[], Any], Callable[[Any], None]]


def _concept_output(widget: JobHost, ctx: PlaneContext, concept: str):
    prompt = concept or "exemplar"
    return L.output_layer(widget.viewer, ctx.image, "concept", prompt, f"SAM3 {prompt}", ctx.axis)


def concept_job(widget: JobHost, ctx: PlaneContext, choice: ModelChoice) -> Job:
    """Every instance of the typed concept and/or exemplar boxes, in the chosen scope."""
    concept = widget.concept.value.strip()
    shapes, scope = widget.exemplars.value, widget.scope.value
    engine, report, score = widget.engine, widget.report, float(widget.score.value)
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


def _stack_job(widget: JobHost, ctx: PlaneContext, choice: ModelChoice, concept: str) -> Job:
    """The whole z/t axis through `sam3_core.large.stacks.segment_stack` (ids linked across slices).

    Slices are read lazily and scaled with one intensity range for the whole stack, so an object
    keeps its brightness from slice to slice (a plane run normalises its plane alone).
    """
    fixed, n = fixed_stack_index(ctx)
    shapes = widget.exemplars.value
    per_slice = {
        z: ex
        for z in range(n)
        if (ex := L.exemplars_on_plane(shapes, ctx.image, (*fixed, z), ctx.axis))
    }
    if not concept and not per_slice:
        raise ValueError("no prompt: type a concept or draw exemplar boxes on some slice")
    engine, report, method = widget.engine, widget.report, widget.stack_method.value
    score = float(widget.score.value)

    def work() -> np.ndarray:
        from sam3_core.large.stacks import normalize_stack, segment_stack

        predictor = engine.predictor(choice, report)
        report(0, n, "reading the stack")
        stack = normalize_stack(ctx.stack(fixed), ctx.channels)  # one contrast for all slices

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
    widget: JobHost, ctx: PlaneContext, choice: ModelChoice, xy: np.ndarray, labels: np.ndarray
) -> Job:
    """One object from clicks; later clicks on the same plane refine it (its mask is reused)."""
    current = widget.current_object
    same = current is not None and current["key"] == ctx.key
    mask_input = current.get("logits") if same else None
    engine, report = widget.engine, widget.report

    def work() -> Any:
        return engine.segment_object(choice, ctx.key, ctx.rgb8, xy, labels, mask_input, report)

    def done(inst: Any) -> None:
        layer = L.output_layer(
            widget.viewer, ctx.image, "objects", "clicks", "SAM3 objects", ctx.axis
        )
        if widget.current_object is None or widget.current_object["key"] != ctx.key:
            widget.current_object = {"key": ctx.key, "id": int(np.max(layer.data)) + 1}
        widget.current_object["logits"] = inst.low_res_logits[0]
        L.write_object(layer, ctx.index, inst.masks[0], widget.current_object["id"])
        widget.status.value = (
            f"object {widget.current_object['id']}: score {float(inst.scores[0]):.2f}; "
            "click to refine, or 'Next object'"
        )

    return work, done
