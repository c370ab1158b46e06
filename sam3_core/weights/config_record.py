"""Which model config a checkpoint needs, so that users never name one.

In order: the config record our `save_checkpoint` stores in a safetensors file's metadata;
else the preset (`sam3_core.config.CONFIGS`: the released SAM 3 and SAM 3.1 and the tiny test
models) whose parameter names and shapes fit the checkpoint's. A checkpoint that fits none
raises CheckpointError saying to pass the config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from sam3_core.config import CONFIGS, Sam3Config, config_from_dict, config_to_dict, get_config
from sam3_core.weights.errors import CheckpointError

CONFIG_METADATA_KEY = "sam3_core.config"
PATCH_EMBED = "detector_model.vision_encoder.backbone.embeddings.patch_embeddings.projection.weight"


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write `model`'s weights as .safetensors with its config recorded in the file's metadata
    (so `load_model(path)` rebuilds it without being told the config); returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint writes .safetensors files, not {path.name!r}")
    record = json.dumps(config_to_dict(model.config))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={CONFIG_METADATA_KEY: record})
    return path


def read_config_record(path: str | os.PathLike) -> Sam3Config | None:
    """The config stored in a .safetensors file's metadata by `save_checkpoint`, or None."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        record = (f.metadata() or {}).get(CONFIG_METADATA_KEY)
    if record is None:
        return None
    try:
        return config_from_dict(json.loads(record))
    except (ValueError, TypeError) as err:
        raise CheckpointError(
            f"{str(path)!r} holds a config record this version cannot read ({err}): pass the "
            "config explicitly"
        ) from err


@cache
def preset_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Parameter name -> shape of a preset's model, built on the meta device (no memory)."""
    from sam3_core.modeling.sam3 import Sam3Model

    with torch.device("meta"):
        model = Sam3Model(get_config(name))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def fitting_presets(sd: Mapping[str, Tensor]) -> list[str]:
    """Presets whose model has every key of `sd` (our layout) with the same shape."""
    patch = sd.get(PATCH_EMBED)
    names = []
    for name in CONFIGS:
        vit = get_config(name).vit
        if patch is not None and tuple(patch.shape) != (vit.hidden_size, 3, *[vit.patch_size] * 2):
            continue  # cheap test first: building a full-size preset takes seconds
        shapes = preset_shapes(name)
        if all(shapes.get(k) == tuple(v.shape) for k, v in sd.items()):
            names.append(name)
    return names


def infer_config(sd: Mapping[str, Tensor], path: str | os.PathLike | None = None) -> Sam3Config:
    """The config of a checkpoint in our layout: its stored record, else the fitting preset."""
    if path is not None and (record := read_config_record(path)) is not None:
        return record
    names = fitting_presets(sd)
    if not names:
        raise CheckpointError(
            "cannot tell this checkpoint's model config: it carries no config record and fits "
            f"none of the presets {sorted(CONFIGS)}; pass config=Sam3Config(...) (a model "
            "saved with sam3_core.save_checkpoint records its own)"
        )
    return get_config(names[0])


def config_hint(sd: Mapping[str, Tensor], given: Sam3Config) -> str:
    """A hint for a checkpoint that does not fit the config a caller passed."""
    names = [n for n in fitting_presets(sd) if get_config(n) != given]
    if not names:
        return ""
    return (
        f"the config passed does not fit this checkpoint, which fits the {names[0]!r} config "
        f"({get_config(names[0]).kind}): leave config unset and it is picked from the checkpoint"
    )
