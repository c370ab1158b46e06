"""Builders: a model from a config name, or the released weights from the hub or a file."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

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
    config: str | Sam3Config | None = None,
    token: str | None = None,
) -> Sam3Model:
    """Build the model and load weights: a local file, or a hub repo id (default `facebook/sam3`;
    `facebook/sam3.1` for SAM 3.1).

    Accepts Meta's `sam3.pt` and `sam3.1_multiplex.pt` and the transformers layouts:
    `Sam3VideoModel` (the hub's `model.safetensors`), `Sam3Model` (detector only) and
    `Sam3TrackerModel` / `Sam3TrackerVideoModel` (tracker only). The checkpoint picks the model:
    `config` (a preset name or a `Sam3Config`) is only needed for a custom model saved without
    `save_checkpoint`'s config record. Parts a checkpoint lacks are never used at random:
    `model.loaded_parts` records what it held, and a call that needs more raises
    `MissingPartError` naming the part.
    """
    from sam3_core.weights import checkpoint as ckpt
    from sam3_core.weights.config_record import config_hint, infer_config

    given = get_config(config) if isinstance(config, str) else config  # a typo fails before I/O
    path = ckpt.resolve_checkpoint(checkpoint, token=token)
    state = ckpt.to_our_layout(ckpt.load_state_dict(path))
    cfg = given if given is not None else infer_config(state, path)
    with torch.device("meta"), skipped_init():
        model = Sam3Model(cfg)
    try:
        ckpt.load_into(model, state)  # assigns the loaded tensors; absent parts become NaN
    except ckpt.CheckpointError as err:
        if given is None:
            raise
        hint = config_hint(state, given)
        raise ckpt.CheckpointError(f"{hint}\n  details: {err}" if hint else str(err)) from err
    model.apply(_reset_buffers)
    return model.eval()


INIT_LOCK = threading.Lock()  # `skipped_init` patches torch.nn.init for the whole process


@contextlib.contextmanager
def skipped_init() -> Iterator[None]:
    """`torch.nn.init`'s in-place initialisers as no-ops while a model is built on the meta device
    to be loaded: every weight comes from the checkpoint, and running them on meta tensors imports
    torch._dynamo (their meta kernels are Python references), about 2.5 s in every process that
    loads a model (a CLI run, each Ray worker). Loads in several threads take turns; a model
    built in another thread meanwhile (`build_model`) would get no initialisation."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    with INIT_LOCK:
        saved = {n: getattr(torch.nn.init, n) for n in names}
        for name, fn in saved.items():
            if callable(fn):
                setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        try:
            yield
        finally:
            for name, fn in saved.items():
                setattr(torch.nn.init, name, fn)


def _reset_buffers(module: torch.nn.Module) -> None:
    """Recompute non-persistent buffers (RoPE tables) that building on meta left unallocated."""
    reset = getattr(module, "reset_buffers", None)
    if callable(reset):
        reset()
