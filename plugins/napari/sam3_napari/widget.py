"""The SAM 3 dock widget: concept, exemplar and click segmentation into our own Labels layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from sam3_napari import layers as L
from sam3_napari.engine import DEFAULT_CHECKPOINT, Cancelled, Engine, ModelChoice
from sam3_napari.jobs import concept_job, object_job
from sam3_napari.plane import PlaneContext, plane_context

if TYPE_CHECKING:
    import napari

CONFIG_NAMES = ("sam3", "sam3_tiny")
SCOPES = ("current plane", "whole stack (z/t)", "tiled (large plane)")


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued Qt signal)."""

    progress = Signal(int, int, str)


class Sam3Widget(Container):
    """Dock widget: pick an image, type a concept or draw prompts, get a Labels layer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.engine = Engine()
        self.worker = None
        self.current_object: dict | None = None  # the object being refined by clicks
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
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
        self.channel_axis = SpinBox(
            label="channel axis",
            value=-1,
            min=-1,
            max=8,
            tooltip="-1: none (gray or RGB). Else the data axis holding channels",
        )
        self.channels = LineEdit(label="channels", tooltip="1-3 channels to use, e.g. '0, 1'")
        self.checkpoint = LineEdit(label="checkpoint", value=DEFAULT_CHECKPOINT)
        self.config = ComboBox(label="config", choices=list(CONFIG_NAMES), value="sam3")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"])
        self.run_concept = PushButton(text="Segment concept")
        self.auto = CheckBox(text="segment object on each click", value=True)
        self.run_object = PushButton(text="Segment object (clicks)")
        self.next_object = PushButton(text="Next object")
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=3, value=0)
        self.status = Label(label="status", value="ready")

        def row(label: str, *widgets: Any) -> Container:
            return Container(layout="horizontal", label=label, labels=False, widgets=widgets)

        self.extend([
            self.image, self.concept, self.exemplars, self.clicks, self.polarity,
            self.add_prompts, self.score, self.scope, self.stack_method,
            row("tile size, overlap", self.tile_size, self.overlap),
            row("channel axis, use", self.channel_axis, self.channels),
            self.checkpoint, row("config, device", self.config, self.device),
            self.run_concept, self.auto, row("", self.run_object, self.next_object),
            self.cancel, self.progress, self.status,
        ])  # fmt: skip

        self.add_prompts.changed.connect(self._add_prompt_layers)
        self.polarity.changed.connect(self._set_polarity)
        self.clicks.changed.connect(self._watch_clicks)
        self.run_concept.changed.connect(self.segment_concept)
        self.run_object.changed.connect(self.segment_object)
        self.next_object.changed.connect(self.start_next_object)
        self.cancel.changed.connect(self._cancel)
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

    def _refresh_choices(self, event: Any = None) -> None:
        self.reset_choices()

    def _add_prompt_layers(self) -> None:
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
    def _choice(self) -> ModelChoice:
        device = "" if self.device.value == "auto" else self.device.value
        return ModelChoice(self.checkpoint.value.strip(), self.config.value, device)

    def _context(self) -> PlaneContext:
        axis = None if self.channel_axis.value < 0 else int(self.channel_axis.value)
        return plane_context(self.viewer, self.image.value, axis, self.channels.value)

    def report(self, done: int, total: int, message: str) -> None:
        """Progress from a worker thread, shown on the GUI thread (safe to call from any)."""
        self._relay.progress.emit(done, total, message)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress.max, self.progress.value = max(total, 1), min(done, max(total, 1))
        self.status.value = message

    def _start(self, job: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run `job` in a worker thread; `done(result)` runs on the GUI thread."""
        if self.worker is not None:
            show_info("SAM 3 is busy: wait for the current run or press Cancel.")
            return

        def safe() -> tuple[bool, Any]:
            try:
                return True, job()
            except Exception as exc:  # noqa: BLE001 - shown to the user by _finish
                return False, exc

        self.engine.cancel.clear()
        self.worker = thread_worker(safe)()
        self.worker.returned.connect(lambda out: self._finish(out, done))
        self.worker.finished.connect(self._on_finished)
        self._set_running(True)
        self.worker.start()

    def _finish(self, out: tuple[bool, Any], done: Callable[[Any], None]) -> None:
        ok, value = out
        if ok:
            done(value)
        elif isinstance(value, Cancelled):
            self.status.value = "cancelled"
        else:
            self._error(value)

    def _error(self, exc: BaseException) -> None:
        message = f"SAM 3: {exc}"
        if isinstance(exc, (OSError, KeyError, RuntimeError)) and not self.engine._predictor:
            message += (
                f" (could not load '{self._choice().checkpoint}' with config "
                f"'{self._choice().config}': set 'checkpoint' to a local .safetensors/.pt file "
                "or a hub id you can download, and the config that matches it)"
            )
        self.status.value = "error: see the notification"
        show_error(message)

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
        if self._pending:
            self._pending = False
            self.segment_object(quiet=True)

    def _set_running(self, running: bool) -> None:
        self.cancel.enabled = running
        for button in (self.run_concept, self.run_object):
            button.enabled = not running

    def _cancel(self) -> None:
        self.engine.cancel.set()
        self.status.value = "cancelling..."

    def _guard(self, make: Callable[[], tuple[Callable, Callable] | None]) -> None:
        """Build a job on the GUI thread (reading layers), showing input errors to the user."""
        try:
            made = make()
        except (ValueError, LookupError) as exc:
            self._error(exc)
            return
        if made is not None:
            self._start(*made)

    # ------------------------------------------------------------------ the three paths
    def segment_concept(self) -> None:
        """Find every instance of the concept / exemplars: plane, whole stack or tiled."""
        self._guard(lambda: concept_job(self, self._context(), self._choice()))

    def segment_object(self, quiet: bool = False) -> None:
        """Segment (or refine) one object from the clicks on the current plane."""

        def make() -> tuple[Callable, Callable] | None:
            ctx = self._context()
            xy, labels = L.clicks_on_plane(self.clicks.value, ctx.image, ctx.index, ctx.axis)
            if not len(xy):
                if quiet:
                    return None
                raise ValueError("no clicks on this plane: choose a Points layer and click")
            return object_job(self, ctx, self._choice(), xy, labels)

        if quiet and (self.image.value is None or self.clicks.value is None):
            return
        self._guard(make)

    def start_next_object(self) -> None:
        """Keep the current object; the next clicks start a new one."""
        self.current_object = None
        if self.clicks.value is not None:
            self.clicks.value.data = np.zeros((0, self.clicks.value.ndim))
        self.status.value = "click on the next object"
