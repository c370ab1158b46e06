"""Store settings read by every host without loading the store itself (no torch needed)."""

STORE_ENV = "SAM3_EMBEDDING_STORE"  # environment variable naming the hosts' default store folder
