"""Where the widget keeps image embeddings: a folder the user picks, else beside the image file,
else the user cache. Automatic folders get one subfolder per model (its signature digest), so
switching weights never meets another model's store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STORE_FOLDER = "sam3-embeddings"


@dataclass(frozen=True)
class StoreChoice:
    """The widget's store settings: `folder` ('' = automatic), the image's file ('' = none),
    and whether embeddings go to disk at all (else memory only)."""

    folder: str = ""
    source: str = ""
    disk: bool = True


def user_cache_base() -> Path:
    """The per-user cache folder for embeddings of images that have no writable folder."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sam3-tools")) / "embeddings"


def automatic_base(source: str) -> Path:
    """`sam3-embeddings` beside the image file when its folder is writable, else the cache."""
    if source:
        parent = Path(source).expanduser().resolve().parent
        if parent.is_dir() and os.access(parent, os.W_OK):
            return parent / STORE_FOLDER
    return user_cache_base()


def store_dir(choice: StoreChoice, model_digest: str) -> Path | None:
    """The folder for this choice and model: the user's as given, or automatic + the model's
    digest; None keeps embeddings in memory only."""
    if not choice.disk:
        return None
    if choice.folder.strip():
        return Path(choice.folder.strip()).expanduser()
    return automatic_base(choice.source) / model_digest
