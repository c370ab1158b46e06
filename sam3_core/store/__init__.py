"""Image embeddings computed once: a byte-bounded memory LRU plus an optional folder on disk.

Entries are keyed by image content (`keys.image_key`) and signed by the model
(`keys.model_signature`); `ImagePredictor(model, store=...)` reads them before running the
backbone and writes its misses.
"""

from __future__ import annotations

from sam3_core.store.errors import StoreError, StoreMismatchError
from sam3_core.store.store import STORE_ENV, EmbeddingStore, StoredImage

__all__ = ["STORE_ENV", "EmbeddingStore", "StoreError", "StoreMismatchError", "StoredImage"]
