"""Image embeddings computed once: a byte-bounded memory LRU plus an optional folder on disk.

Entries are keyed by image content (`keys.image_key`) and signed by the model
(`keys.model_signature`); `ImagePredictor(model, store=...)` reads them before running the
backbone and writes its misses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sam3_core.lazy import lazy_exports
from sam3_core.store.errors import StoreError, StoreMismatchError
from sam3_core.store.settings import STORE_ENV

if TYPE_CHECKING:
    from sam3_core.store.store import EmbeddingStore, StoredImage

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"EmbeddingStore": "sam3_core.store.store", "StoredImage": "sam3_core.store.store"},
)

__all__ = ["STORE_ENV", "EmbeddingStore", "StoreError", "StoreMismatchError", "StoredImage"]
