"""Jobs the widget runs: each is (work for the worker thread, update of layers on the GUI thread).

The work calls sam3_core only (through `Engine`); the GUI part writes into our Labels layers,
one layer per kind of prompt (concept, concept + boxes, tiled, stack link/track, clicks), and
never over pixels the user painted (`sam3_napari.edits`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sam3_napari import layers as L
from sam3_napari.convert import masks_to_labels
from sam3_napari.edits import painted, write_labels, write_object
from sam3_napari.engine import ModelChoice
from sam3_napari.objects import ClickedObject, click_key
from sam3_napari.plane import PlaneContext, fixed_stack_index
from sam3_napari.storage import StoreChoice

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
    current_object: ClickedObject | None  # the object being refined by clicks

    def report(self, done: int, total: int, message: str) -> None: ...

    def notify(self, message: str) -> None: ...

    def store_choice(self, ctx: PlaneContext) -> StoreChoice: ...

    def threshold(self, concept: str) -> float: ...


Job = tuple[Callable[[], Any], Callable[[Any], None]]


def prompt_name(concept: str, boxes: bool, mode: str = "") -> str:
    """The prompt part of an output layer's name and key: 'nucleus + boxes (stack link)'."""
    words = " + ".join(w for w in (concept, "boxes" if boxes else "") if w)
    return f"{words} ({mode})" if mode else words


def _write_concept(
    widget: JobHost,
    ctx: PlaneContext,
    prompt: str,
    index: tuple,
    labels: np.ndarray,
    where: str,
    score: float,
) -> None:
    """Write a concept result into its own layer; nothing found -> a message, no layer."""
    found = int(np.count_nonzero(np.unique(labels)))
    note = f" ({ctx.note})" if ctx.note else ""
    if not found:
        existing = L.find_output(
            widget.viewer, ctx.image, L.output_key(ctx.image, "concept", prompt, ctx.axis)
        )
        kept = f"; '{existing.name}' was left as it was" if existing is not None else ""
        widget.notify(
            f"nothing found for '{prompt}' {where}: no instance scored above {score:.2f}; "
            f"lower 'min score' (or the thresholds file's value) or rephrase{kept}{note}"
        )
        return
    layer = L.output_layer(widget.viewer, ctx.image, "concept", prompt, f"SAM3 {prompt}", ctx.axis)
    write_labels(layer, index, labels)
    mask = painted(layer, index)
    kept = "; your painted pixels were kept" if mask is not None and mask.any() else ""
    widget.status.value = f"{found} instance(s) {where} in '{layer.name}'{kept}{note}"


def concept_job(widget: JobHost, ctx: PlaneContext, choice: ModelChoice) -> Job:
    """Every instance of the typed concept and/or exemplar boxes, in the chosen scope."""
    concept = widget.concept.value.strip()
    shapes, scope = widget.exemplars.value, widget.scope.value
    engine, report, score = widget.engine, widget.report, widget.threshold(concept)
    store = widget.store_choice(ctx)
    if scope.startswith("whole stack"):
        return _stack_job(widget, ctx, choice, concept)
    exemplars = L.exemplars_on_plane(shapes, ctx.image, ctx.index, ctx.axis)
    if not concept and not exemplars:
        raise ValueError(
            "no prompt: type a concept (e.g. 'nucleus') or draw exemplar boxes on this plane"
        )
    tiled = scope.startswith("tiled")
    prompt = prompt_name(concept, bool(exemplars), "tiled" if tiled else "")

    def done(labels: np.ndarray) -> None:
        _write_concept(widget, ctx, prompt, ctx.index, labels, "on this plane", score)

    if tiled:
        size, overlap = int(widget.tile_size.value), int(widget.overlap.value)

        def tiles() -> np.ndarray:
            return engine.segment_tiled(
                choice, ctx.raw(), concept, exemplars, size, overlap, score, ctx.channels, report
            )

        return tiles, done

    def plane() -> np.ndarray:
        inst = engine.segment_concept(choice, store, ctx.rgb8, concept, exemplars, score, report)
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
    score, store = widget.threshold(concept), widget.store_choice(ctx)
    prompt = prompt_name(concept, bool(per_slice), f"stack {method}")

    def work() -> np.ndarray:
        from sam3_core.large.stacks import normalize_stack, segment_stack

        predictor = engine.predictor(choice, store, report)
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
        _write_concept(widget, ctx, prompt, fixed, volume, f"through {n} slices", score)

    return work, done


def object_job(
    widget: JobHost, ctx: PlaneContext, choice: ModelChoice, xy: np.ndarray, labels: np.ndarray
) -> Job:
    """One object from clicks; added clicks on the same plane refine it, the same clicks
    again give the same mask (`ClickedObject` picks the mask each run starts from)."""
    current = widget.current_object
    clicks = click_key(xy, labels)
    mask_input = current.mask_input(clicks) if current and current.key == ctx.key else None
    engine, report, store = widget.engine, widget.report, widget.store_choice(ctx)

    def work() -> Any:
        return engine.segment_object(choice, store, ctx.rgb8, xy, labels, mask_input, report)

    def done(inst: Any) -> None:
        layer = L.output_layer(
            widget.viewer, ctx.image, "objects", "clicks", "SAM3 objects", ctx.axis
        )
        obj = widget.current_object
        if obj is None or obj.key != ctx.key:
            obj = widget.current_object = ClickedObject(ctx.key, int(np.max(layer.data)) + 1)
        obj.record(clicks, mask_input, inst.low_res_logits[0])
        write_object(layer, ctx.index, inst.masks[0], obj.obj_id)
        note = f" ({ctx.note})" if ctx.note else ""
        widget.status.value = (
            f"object {obj.obj_id}: score {float(inst.scores[0]):.2f}; "
            f"click to refine, or 'Next object'{note}"
        )

    return work, done
