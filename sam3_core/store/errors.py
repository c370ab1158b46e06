"""The store's errors: an unusable folder, and a folder made by another model."""

from __future__ import annotations


class StoreError(ValueError):
    """An embedding store that cannot be used as asked; the message says what to do."""


class StoreMismatchError(StoreError):
    """A store made by other weights, config or precision than the predictor that opened it."""
