"""Test-only: a tiny SAM 3.1 model, and our state dict written in Meta's `sam3.1_multiplex.pt`
layout (`detector.*`, `tracker.model.*`).

`to_official_multiplex_layout` inverts `to_our_layout` without hand-written key names: the
detector and interactive head go through the SAM 3 inverse (`to_official_layout`) and then the
converter's own 3.1 <-> SAM 3 prefix tables; the multiplex tracker's names come from running
the converter over the real 3.1 key list (`data/official_sam31_keys.json.gz`) with each tensor
tagged by its index, and reading the tags back.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from sam3_core.build import build_model
from sam3_core.config import sam3_1_tiny
from sam3_core.weights.official import DROPPED
from sam3_core.weights.official_multiplex import (
    DIRECT,
    INTERACTIVE,
    MULTIPLEX,
    convert_official_multiplex,
)
from tests.core.weights.layout_tools import read_layout
from tests.core.weights.official_layout import to_official_layout
from tests.reference import perturb_

OFFICIAL_SAM31_KEYS = Path(__file__).parent / "data" / "official_sam31_keys.json.gz"
MULTIPLEX_PARTS = ("propagation_neck.", "multiplex_tracker.")


def tiny_multiplex_model(seed: int = 0) -> torch.nn.Module:
    """Our tiny SAM 3.1 model with perturbed weights (outputs depend on the inputs), the
    interactive head's one Fourier matrix in both of its keys (as checkpoints hold it)."""
    torch.manual_seed(seed)
    model = build_model(sam3_1_tiny())
    perturb_(model, seed)
    tracker = model.tracker_model
    fourier = tracker.prompt_encoder.shared_embedding.positional_embedding
    tracker.shared_image_embedding.positional_embedding.copy_(fourier)
    return model


@cache
def official_multiplex_layout() -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) of Meta's full-size SAM 3.1 model."""
    return read_layout(OFFICIAL_SAM31_KEYS)


@cache
def _multiplex_names() -> dict[str, str]:
    """Our multiplex-tracker key -> official 3.1 key (these tensors are only renamed)."""
    prefixes = tuple(old for old, _ in (*MULTIPLEX, *DIRECT))
    keys = [k for k in official_multiplex_layout() if k.startswith(prefixes)]
    tagged = {k: torch.tensor([float(i)]) for i, k in enumerate(keys)}
    return {ours: keys[int(v.item())] for ours, v in convert_official_multiplex(tagged).items()}


def _swap(key: str, table) -> str:
    """`key` with the first matching SAM 3 prefix of a (3.1, SAM 3) table put back to 3.1's."""
    for new, old in table:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def to_official_multiplex_layout(our_sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return `our_sd` (a SAM 3.1 model's state dict) as an official 3.1 state dict."""
    names = _multiplex_names()
    out = {names[k]: v for k, v in our_sd.items() if k.startswith(MULTIPLEX_PARTS)}
    image = {k: v for k, v in our_sd.items() if not k.startswith(MULTIPLEX_PARTS)}
    for key, value in to_official_layout(image).items():
        out[_swap(key, INTERACTIVE)] = value
    return out


def official_keys_kept() -> set[str]:
    """The official 3.1 keys the converter keeps (RoPE tables and point projections dropped)."""
    return {k for k in official_multiplex_layout() if not DROPPED.search(k)}
