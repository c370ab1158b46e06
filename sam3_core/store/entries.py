"""What one store entry holds, by name, and its conversion to and from the model's features.

On disk: the ViT trunk output ("vit", [1, h, w, C_vit]) and, once computed, the click head's
three neck levels ("tracker.*": finest two already through conv_s0/conv_s1). In memory only:
the detector's three neck levels ("detector.*"), 5x the trunk's bytes at full size.
Positional encodings are never stored: they depend on the level's size alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from sam3_core.modeling.layers import sine_position_map
from sam3_core.modeling.neck import FPNNeck
from sam3_core.modeling.tracker import Sam3Tracker, TrackerImageFeatures

VIT = "vit"
TRACKER = ("tracker.0", "tracker.1", "tracker.2")
DETECTOR = ("detector.0", "detector.1", "detector.2")
# Click levels read straight into the layouts the decoder uses (channels last: the finest two
# are added to channels-last maps, and the coarsest flattens to [1, hw, C] tokens as a view).
LAYOUTS = dict.fromkeys(TRACKER, torch.channels_last)


def in_layouts(entry: Mapping[str, Tensor]) -> bool:
    """Whether the entry's click levels are in `LAYOUTS` already (as read from disk)."""
    return all(entry[k].is_contiguous(memory_format=f) for k, f in LAYOUTS.items() if k in entry)


def level_positions(levels: list[Tensor], neck: FPNNeck) -> list[Tensor]:
    """The neck's sine encodings of its levels (as `FPNNeck.forward` returns them)."""
    return [
        sine_position_map(f.shape[0], *f.shape[-2:], neck.hidden_size // 2, f.device, f.dtype)
        for f in levels
    ]


def persistent(entry: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The parts of an entry that go to disk (trunk and click levels)."""
    return {k: t for k, t in entry.items() if k == VIT or k in TRACKER}


def tracker_parts(features: TrackerImageFeatures) -> dict[str, Tensor]:
    """Click-head features -> entry parts (batch of one)."""
    s0, s1 = features.high_res_feats
    return dict(zip(TRACKER, (s0, s1, features.image_embed)))


def tracker_features(
    entry: Mapping[str, Tensor], tracker: Sam3Tracker, neck: FPNNeck, device: torch.device
) -> TrackerImageFeatures | None:
    """Entry parts -> the click head's features on `device`, or None if not stored."""
    if not all(k in entry for k in TRACKER):
        return None
    levels = [entry[k].to(device) for k in TRACKER]
    return tracker.prepare_image_features(levels, level_positions(levels, neck), projected=True)


def detector_parts(levels: list[Tensor]) -> dict[str, Tensor]:
    """The detector's neck levels -> entry parts."""
    return dict(zip(DETECTOR, levels))


def detector_levels(
    entry: Mapping[str, Tensor], neck: FPNNeck, device: torch.device
) -> tuple[list[Tensor], list[Tensor]] | None:
    """Entry parts -> (levels, positions) of the detector's neck on `device`, or None."""
    if not all(k in entry for k in DETECTOR):
        return None
    levels = [entry[k].to(device) for k in DETECTOR]
    return levels, level_positions(levels, neck)
