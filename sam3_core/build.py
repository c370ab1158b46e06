"""Builders: a model from a config name, or the released weights from the hub or a file."""

from __future__ import annotations

import os

import torch

from sam3_core.config import Sam3Config, get_config
from sam3_core.modeling.sam3 import Sam3Model


def build_model(
    config: str | Sam3Config = "sam3", device: str | torch.device | None = None
) -> Sam3Model:
    """A randomly initialised model (for tests and benchmarks), in eval mode."""
    cfg = get_config(config) if isinstance(config, str) else config
    if device is not None:
        with torch.device(device):
            return Sam3Model(cfg).eval()
    return Sam3Model(cfg).eval()


def load_model(
    checkpoint: str | os.PathLike | None = None,
    *,
    config: str | Sam3Config = "sam3",
    token: str | None = None,
) -> Sam3Model:
    """Build the model and load weights: a local file, or a hub repo id (default `facebook/sam3`).

    Accepts the official `sam3.pt` layout and the transformers `model.safetensors` layout.
    """
    from sam3_core.weights import checkpoint as ckpt

    path = ckpt.resolve_checkpoint(checkpoint, token=token)
    state = ckpt.to_our_layout(ckpt.load_state_dict(path))
    with torch.device("meta"):
        model = Sam3Model(get_config(config) if isinstance(config, str) else config)
    model = model.to_empty(device="cpu")
    ckpt.load_into(model, state)
    model.apply(_reset_buffers)
    return model.eval()


def _reset_buffers(module: torch.nn.Module) -> None:
    """Recompute non-persistent buffers (RoPE tables etc.) that `to_empty` left uninitialised."""
    reset = getattr(module, "reset_buffers", None)
    if callable(reset):
        reset()
