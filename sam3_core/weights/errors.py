"""The error every checkpoint problem raises, shared by the loader and the layout converters."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read, recognised or loaded; the message says the fix."""
