"""Test-only: write our state dict in Meta's official `sam3.pt` layout (`detector.*`, `tracker.*`).

`to_official_layout` inverts `sam3_core.weights.checkpoint.to_our_layout`. It hand-writes no key names:
the name map comes from running the converter's own renaming (`rename_key`) over every key of the
real official layout (`data/official_sam3_keys.json.gz`) and inverting the result. Only the
value transforms are undone by hand: q/k/v fused back, a cls slot put back into the ViT position
table, the CLIP text projection transposed back and the tracker's point embeddings unstacked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch
from torch import Tensor

from sam3_core.weights.official import DROPPED, rename_key
from tests.core.weights.layout_tools import read_layout

OFFICIAL_KEYS = Path(__file__).parent / "data" / "official_sam3_keys.json.gz"

POS_EMBED = "detector_model.vision_encoder.backbone.embeddings.position_embeddings"
TEXT_PROJECTION = "detector_model.text_encoder.text_projection.weight"
POINT_EMBED = "tracker_model.prompt_encoder.point_embed.weight"
POINT_EMBED_PART = "tracker_model.prompt_encoder.point_embeddings.{}.weight"
# Both hold the tracker's one Fourier-feature matrix; sam3.pt stores only the prompt encoder's.
FOURIER = "tracker_model.prompt_encoder.shared_embedding.positional_embedding"
FOURIER_ALIAS = "tracker_model.shared_image_embedding.positional_embedding"
QKV = re.compile(r"(.+)\.([qkv])_proj\.(weight|bias)")


@cache
def official_layout() -> dict[str, tuple[tuple[int, ...], str]]:
    """Key -> (shape, dtype) of Meta's full-size official SAM 3 video model."""
    return read_layout(OFFICIAL_KEYS)


@cache
def _official_names(downsampler_depth: int) -> dict[str, str]:
    """Converter-renamed name (before q/k/v split and point-embedding stacking) -> official key.

    The full-size official model has at least as many layers of every kind as a tiny one, so
    its key list names every key a smaller model can have.
    """
    names: dict[str, str] = {}
    for key in official_layout():
        if DROPPED.search(key):
            continue
        new = rename_key(key, downsampler_depth)
        if new in names:
            raise AssertionError(f"{names[new]!r} and {key!r} both rename to {new!r}")
        names[new] = key
    return names


def to_official_layout(our_sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Return `our_sd` (our / transformers keys) as an official `sam3.pt` state dict.

    The ViT cls position, which SAM 3 never uses, is written as zeros. Raises ValueError if
    the two copies of the tracker's Fourier matrix differ: the official layout holds only one.
    """
    depth = len({m[1] for k in our_sd if (m := re.search(r"mask_downsampler\.layers\.(\d+)", k))})
    names = _official_names(depth)
    out: dict[str, Tensor] = {}
    fused: dict[str, dict[str, Tensor]] = {}
    for key, value in our_sd.items():
        if key == FOURIER_ALIAS:
            if FOURIER in our_sd and not torch.equal(value, our_sd[FOURIER]):
                raise ValueError(f"{key} differs from {FOURIER}; sam3.pt stores one matrix")
            continue
        if key == POINT_EMBED:
            for i, row in enumerate(value):
                out[names[POINT_EMBED_PART.format(i)]] = row[None].clone()
            continue
        if m := QKV.fullmatch(key):
            candidates = (f"{m[1]}.qkv.{m[3]}", f"{m[1]}.in_proj_{m[3]}")  # ViT; nn.MultiheadAttn
            target = next((c for c in candidates if c in names), None)
            if target is not None:
                fused.setdefault(target, {})[m[2]] = value
                continue
        if key not in names:
            raise KeyError(f"{key!r} has no counterpart in the official layout")
        if key == POS_EMBED:  # (1, n*n, C) -> (1, 1 + n*n, C)
            value = torch.cat([value.new_zeros(1, 1, value.shape[-1]), value], dim=1)
        elif key == TEXT_PROJECTION:  # nn.Linear weight -> the x @ P matrix
            value = value.T.contiguous()
        out[names[key]] = value
    for target, parts in fused.items():
        if sorted(parts) != ["k", "q", "v"]:
            raise KeyError(f"{target!r}: only {sorted(parts)} of q/k/v are in the state dict")
        out[names[target]] = torch.cat([parts[c] for c in "qkv"], dim=0)
    return out
