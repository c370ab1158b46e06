"""Process entry points for the store tests (importable by spawned processes)."""

from __future__ import annotations


def fill_store(folder: str, seeds: list[int], barrier) -> list[str]:
    """Open the store in a new process, wait for the others, then encode images into it."""
    import torch

    from sam3_core import ImagePredictor
    from tests.core.helpers import make_image, tiny_model

    torch.set_num_threads(1)
    pred = ImagePredictor(tiny_model(), device="cpu", store=folder)
    barrier.wait(timeout=120)
    keys = []
    for seed in seeds:
        state = pred.set_image(make_image(97, 150, seed=seed))
        pred.tracker_features(state)  # rewrites the entry with the click levels
        keys.append(state.key)
    return keys
