"""Short messages for napari's notifications: the fix first, long listings cut (pure text)."""

from __future__ import annotations

MAX_CHARS = 360


def hint_first(text: str, limit: int = MAX_CHARS) -> str:
    """A multi-line error as one short line, cut: its first line when that says something
    (not a header ending in ':'), then its 'hint:' lines, then the rest (listings last)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    hints = [line[5:].strip() for line in lines if line.lower().startswith("hint:")]
    rest = [line for line in lines if not line.lower().startswith("hint:")]
    lead = rest[:1] if rest and not rest[0].endswith(":") else []
    out = "; ".join(lead + hints + rest[len(lead) :])
    return out if len(out) <= limit else out[: limit - 3].rstrip(" ,;") + "..."


def load_error(checkpoint: str, config: str, error: BaseException) -> str:
    """Why the model did not load and what to set in the widget."""
    what = f"could not load '{checkpoint or 'facebook/sam3'}'"
    if config:
        what += f" with config '{config}'"
    fix = "set 'checkpoint' to a local .safetensors/.pt file or a hub id you can download" + (
        ", and 'config' to auto or the config the checkpoint was made with" if config else ""
    )
    return f"{what}: {hint_first(str(error))} ({fix})"


def store_error(folder: object, error: BaseException) -> str:
    """Why an embedding store folder cannot be used, and what to choose instead."""
    from sam3_core.store import StoreMismatchError

    if isinstance(error, StoreMismatchError):
        what = f"the embedding store {folder} holds another model's embeddings"
    else:
        what = f"the embedding store {folder} cannot be used"
    fix = "choose another folder in 'embedding store', or leave it empty for an automatic one"
    return f"{what}: {fix} ({hint_first(str(error), 200)})"
