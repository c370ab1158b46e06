"""Running widget jobs off the GUI thread: progress, cancel, and errors shown as short messages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from magicgui.widgets import Container, Label, ProgressBar, PushButton
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QSizePolicy

from sam3_napari.engine import Cancelled, Engine
from sam3_napari.messages import hint_first

logger = logging.getLogger(__name__)
Made = tuple[Callable[[], Any], Callable[[Any], None]]


class _Relay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued Qt signal)."""

    progress = Signal(int, int, str)


class JobRunner(Container):
    """A container that runs one job at a time in a worker thread (napari's `thread_worker`).

    A job is (work, done): `work()` runs in the worker and may call `report`; `done(result)`
    runs on the GUI thread. Every error, in either part, reaches the user as a notification.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = Engine()
        self.worker = None
        self._relay = _Relay()
        self._relay.progress.connect(self._on_progress)
        self.cancel = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="progress", min=0, max=3, value=0)
        self.status = Label(label="status", value="ready")
        self.status.native.setWordWrap(True)  # a long message wraps instead of widening the dock
        self.status.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.changed.connect(lambda text: self.status.native.setToolTip(str(text)))
        self.cancel.changed.connect(self.cancel_job)

    @property
    def idle(self) -> bool:
        """True when no job runs (scripts and tests wait for this before reading layers)."""
        return self.worker is None

    def report(self, done: int, total: int, message: str) -> None:
        """Progress from a worker thread, shown on the GUI thread (safe to call from any)."""
        self._relay.progress.emit(done, total, message)

    def notify(self, message: str) -> None:
        """Tell the user something that is not an error (status line and a notification)."""
        self.status.value = message
        show_info(f"SAM 3: {message}")

    def run_buttons(self) -> list[PushButton]:
        """Buttons disabled while a job runs (subclasses list theirs)."""
        return []

    def after_job(self) -> None:
        """Called on the GUI thread when a job ended, whatever its outcome."""

    def _on_progress(self, done: int, total: int, message: str) -> None:
        self.progress.max, self.progress.value = max(total, 1), min(done, max(total, 1))
        self.status.value = message

    def guard(self, make: Callable[[], Made | None]) -> None:
        """Build a job on the GUI thread (reading layers) and start it; input errors are shown."""
        try:
            made = make()
        except Exception as exc:  # noqa: BLE001 - a Qt slot must not raise (PyQt aborts)
            self.show_error(exc)
            return
        if made is not None:
            self.start(*made)

    def start(self, work: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run `work` in a worker thread; `done(result)` runs on the GUI thread."""
        if self.worker is not None:
            show_info("SAM 3 is busy: wait for the current run or press Cancel.")
            return

        def safe() -> tuple[bool, Any]:
            try:
                return True, work()
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
        if not ok:
            if isinstance(value, Cancelled):
                self.status.value = "cancelled"
            else:
                self.show_error(value)
            return
        try:
            done(value)
        except Exception as exc:  # noqa: BLE001 - a Qt slot must not raise (PyQt aborts)
            self.show_error(exc)

    def show_error(self, exc: BaseException) -> None:
        """One short notification (the fix first); the full text goes to the log."""
        logger.warning("SAM 3: %s", exc, exc_info=exc)
        self.status.value = "error: see the notification"
        show_error(f"SAM 3: {hint_first(str(exc)) or type(exc).__name__}")

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
        self.after_job()

    def _set_running(self, running: bool) -> None:
        self.cancel.enabled = running
        for button in self.run_buttons():
            button.enabled = not running

    def cancel_job(self) -> None:
        """Ask the running job to stop at its next step (the Cancel button); no-op when idle."""
        if self.worker is None:
            return
        self.engine.cancel.set()
        self.status.value = "cancelling..."
