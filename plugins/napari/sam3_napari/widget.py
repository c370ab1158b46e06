"""The SAM 3 dock widget: concept, exemplar and click segmentation into our own Labels layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    PushButton,
    RadioButtons,
    SpinBox,
)

from sam3_napari import layers as L
from sam3_napari.engine import DEFAULT_CHECKPOINT, ModelChoice
from sam3_napari.jobs import concept_job, object_job
from sam3_napari.objects import ClickedObject
from sam3_napari.plane import PlaneContext, plane_context
from sam3_napari.runner import JobRunner, Made
from sam3_napari.storage import StoreChoice

if TYPE_CHECKING:
    import napari

CONFIGS = (("auto", ""), ("sam3", "sam3"), ("sam3_tiny", "sam3_tiny"))
SCOPES = ("current plane", "whole stack (z/t)", "tiled (large plane)")


class Sam3Widget(JobRunner):
    """Dock widget: pick an image, type a concept or draw prompts, get a Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.current_object: ClickedObject | None = None  # the object being refined by clicks
        self._watched = None
        self._pending = False

        self.image = ComboBox(label="image", choices=self._layers("Image"))
        self.concept = LineEdit(label="concept", tooltip="a noun phrase, e.g. 'nucleus'")
        self.exemplars = ComboBox(label="exemplar boxes", choices=self._layers("Shapes", True))
        self.clicks = ComboBox(label="clicks", choices=self._layers("Points", True))
        self.polarity = RadioButtons(
            label="new prompts",
            choices=["positive", "negative"],
            value="positive",
            orientation="horizontal",
        )
        self.add_prompts = PushButton(text="Add prompt layers")
        self.score = FloatSpinBox(label="min score", value=0.5, min=0.0, max=1.0, step=0.05)
        self.scope = ComboBox(label="scope", choices=list(SCOPES), value=SCOPES[0])
        self.stack_method = ComboBox(label="stack method", choices=["link", "track"])
        self.tile_size = SpinBox(label="tile size", value=1008, min=64, max=8192, step=64)
        self.overlap = SpinBox(label="tile overlap", value=128, min=0, max=2048, step=16)
        self.channel_axis = ComboBox(
            label="channel axis",
            choices=self._axes,
            tooltip="auto: a small last axis, e.g. (256, 256, 5), holds channels; "
            "none: gray or RGB; or the data axis holding channels",
        )
        self.channels = LineEdit(
            label="channels", tooltip="1-3 channels to use, e.g. '0, 1' (empty: the first 3)"
        )
        self.checkpoint = LineEdit(label="checkpoint", value=DEFAULT_CHECKPOINT)
        self.config = ComboBox(
            label="config", choices=CONFIGS, value="", tooltip="auto: what the checkpoint needs"
        )
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"])
        self.store_folder = FileEdit(
            label="embedding store",
            mode="d",
            nullable=True,
            tooltip="folder for image embeddings (empty: 'sam3-embeddings' beside the image "
            "file, else the user cache); a plane encoded once answers at once later",
        )
        self.store_disk = CheckBox(text="keep embeddings on disk", value=True)
        self.thresholds_file = FileEdit(
            label="thresholds",
            mode="r",
            filter="*.json",
            nullable=True,
            tooltip="per-concept score thresholds (from `sam3 eval --calibrate`); "
            "overrides 'min score'",
        )
        self.thresholds = None  # sam3_core.metrics.thresholds.Thresholds once a file is loaded
        self.run_concept = PushButton(text="Segment concept")
        self.auto = CheckBox(text="segment object on each click", value=True)
        self.run_object = PushButton(text="Segment object (clicks)")
        self.next_object = PushButton(text="Next object")

        def row(label: str, *widgets: Any) -> Container:
            return Container(layout="horizontal", label=label, labels=False, widgets=widgets)

        self.extend([
            self.image, self.concept, self.exemplars, self.clicks, self.polarity,
            self.add_prompts, self.score, self.scope, self.stack_method,
            row("tile size, overlap", self.tile_size, self.overlap),
            row("channel axis, use", self.channel_axis, self.channels),
            self.checkpoint, row("config, device", self.config, self.device),
            self.store_folder, self.store_disk, self.thresholds_file,
            self.run_concept, self.auto, row("", self.run_object, self.next_object),
            self.cancel, self.progress, self.status,
        ])  # fmt: skip

        self.add_prompts.changed.connect(self.add_prompt_layers)
        self.polarity.changed.connect(self._set_polarity)
        self.clicks.changed.connect(self._watch_clicks)
        self.image.changed.connect(self._refresh_choices)
        self.thresholds_file.changed.connect(self._load_thresholds)
        self.run_concept.changed.connect(self.segment_concept)
        self.run_object.changed.connect(self.segment_object)
        self.next_object.changed.connect(self.start_next_object)
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self._refresh_choices)

    # ------------------------------------------------------------------ choices and prompts
    def _layers(self, kind: str, optional: bool = False) -> Callable[[Any], list]:
        def choices(_widget: Any) -> list:
            found = [(lay.name, lay) for lay in self.viewer.layers if type(lay).__name__ == kind]
            if kind == "Image":
                found = [(n, lay) for n, lay in found if L.tag_of(lay) is None]
            return [("(none)", None), *found] if optional else found

        return choices

    def _axes(self, _widget: Any) -> list:
        image = self.image.value if hasattr(self, "image") else None
        ndim = image.ndim if image is not None else 3
        return [("auto", "auto"), ("none", None), *((str(i), i) for i in range(ndim))]

    def _refresh_choices(self, event: Any = None) -> None:
        self.reset_choices()

    def add_prompt_layers(self) -> None:
        """Add a Shapes layer (exemplar boxes) and a Points layer (clicks) on the chosen image's
        grid, select them as the widget's prompts and leave the Points layer active."""
        image = self.image.value
        ndim = image.ndim if image is not None else 2
        shapes, points = L.add_prompt_layers(self.viewer, ndim)
        if image is not None:
            for layer in (shapes, points):
                layer.scale, layer.translate = image.scale, image.translate
        self.reset_choices()
        self.exemplars.value, self.clicks.value = shapes, points
        self._set_polarity()
        shapes.mode, points.mode = "add_rectangle", "add"
        self.viewer.layers.selection.active = points

    def _set_polarity(self) -> None:
        positive = self.polarity.value == "positive"
        L.set_polarity([self.exemplars.value, self.clicks.value], positive)

    def _watch_clicks(self) -> None:
        if self._watched is not None:
            self._watched.events.data.disconnect(self._on_clicks_changed)
        self._watched = self.clicks.value
        if self._watched is not None:
            self._watched.events.data.connect(self._on_clicks_changed)

    def _on_clicks_changed(self, event: Any) -> None:
        if not self.auto.value or str(getattr(event, "action", "added")) not in (
            "added",
            "removed",
            "changed",
        ):
            return
        if self.worker is not None:
            self._pending = True
        else:
            self.segment_object(quiet=True)

    # ------------------------------------------------------------------ running jobs
    @property
    def idle(self) -> bool:
        """True when no job runs and no click waits for one."""
        return self.worker is None and not self._pending

    def model_choice(self) -> ModelChoice:
        """The checkpoint, config and device set in the widget."""
        device = "" if self.device.value == "auto" else self.device.value
        return ModelChoice(self.checkpoint.value.strip(), self.config.value or "", device)

    def current_plane(self) -> PlaneContext:
        """The chosen image's current plane (z/t from the sliders) and its channels; a channel
        axis in use moves to a slider."""
        ctx = plane_context(
            self.viewer, self.image.value, self.channel_axis.value, self.channels.value
        )
        if ctx.axis is not None and L.channels_to_slider(self.viewer, ctx.image, ctx.axis):
            ctx.note = "; ".join(filter(None, [ctx.note, "channels now on a slider"]))
        return ctx

    def store_choice(self, ctx: PlaneContext) -> StoreChoice:
        """Where this image's embeddings are kept (see `sam3_napari.storage`)."""
        source = getattr(getattr(ctx.image, "source", None), "path", None) or ""
        folder = self.store_folder.value
        return StoreChoice(str(folder) if folder else "", str(source), bool(self.store_disk.value))

    def threshold(self, concept: str) -> float:
        """The score a found instance needs: the thresholds file's for this concept (its
        default for box-only prompts), else 'min score'."""
        if self.thresholds is None:
            return float(self.score.value)
        return self.thresholds.for_concept(concept) if concept else self.thresholds.default

    def _load_thresholds(self) -> None:
        from sam3_core.metrics.thresholds import load_thresholds

        path, self.thresholds = self.thresholds_file.value, None
        self.score.enabled = True
        if path is None:
            self.status.value = "thresholds: none ('min score' applies)"
            return
        try:
            self.thresholds = load_thresholds(path)
        except ValueError as exc:  # ThresholdsError: names the file, the problem and the fix
            self.show_error(exc)
            return
        self.score.enabled = False
        th = self.thresholds
        self.status.value = (
            f"thresholds from {path.name}: {len(th.concepts)} concept(s), default {th.default:.2f}"
        )

    def run_buttons(self) -> list[PushButton]:
        """The buttons disabled while a job runs."""
        return [self.run_concept, self.run_object]

    def after_job(self) -> None:
        """Run the click that arrived while the last job was running."""
        if self._pending:
            self._pending = False
            self.segment_object(quiet=True)

    # ------------------------------------------------------------------ the three paths
    def segment_concept(self) -> None:
        """Find every instance of the concept / exemplars: plane, whole stack or tiled."""
        self.guard(lambda: concept_job(self, self.current_plane(), self.model_choice()))

    def segment_object(self, quiet: bool = False) -> None:
        """Segment (or refine) one object from the clicks on the current plane."""

        def make() -> Made | None:
            ctx = self.current_plane()
            xy, labels = L.clicks_on_plane(self.clicks.value, ctx.image, ctx.index, ctx.axis)
            if not len(xy):
                if quiet:
                    return None
                raise ValueError("no clicks on this plane: choose a Points layer and click")
            return object_job(self, ctx, self.model_choice(), xy, labels)

        if quiet and (self.image.value is None or self.clicks.value is None):
            return
        self.guard(make)

    def start_next_object(self) -> None:
        """Keep the current object; the next clicks start a new one."""
        self.current_object = None
        if self.clicks.value is not None:
            self.clicks.value.data = np.zeros((0, self.clicks.value.ndim))
        self.status.value = "click on the next object"
