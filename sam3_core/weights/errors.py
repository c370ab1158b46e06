"""The errors checkpoint problems raise, shared by the loader, the converters and the model."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read, recognised or loaded; the message says the fix."""


class MissingPartError(CheckpointError):
    """A call needs a part of the model (detector, tracker, memory) its checkpoint did not hold."""
