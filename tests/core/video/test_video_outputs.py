"""Per-frame outputs (`sam3_core.video.outputs`): masks at the video size made faster (absent
objects skipped, a slice at a time) but equal to one bilinear resize of every object."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sam3_core.video import outputs
from sam3_core.video.outputs import any_pixel, upsample_masks


def one_resize(low: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(low[None], size=size, mode="bilinear", align_corners=False)[0] > 0


def logits(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """Logits with absent objects (no positive value), present ones, one with a NaN and one
    positive only on a single low-res pixel."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(n, side, side, generator=g) * 3 - 1
    low[::3] = -low[::3].abs()  # absent
    low[1, 2, 3] = float("nan")
    low[4] = -5.0
    low[4, side // 2, side // 3] = 0.5
    low[5, 0, 0] = 0.0  # zero is not positive
    low[5, 1:] = -1.0
    return low


@pytest.mark.parametrize(
    ("side", "size"), [(32, (240, 320)), (32, (17, 23)), (72, (48, 40)), (16, (16, 16))]
)
@pytest.mark.parametrize("slice_elements", [1, 3000, 1 << 20])
def test_upsample_masks_equals_one_resize(side, size, slice_elements, monkeypatch):
    monkeypatch.setattr(outputs, "CPU_SLICE_ELEMENTS", slice_elements)
    low = logits(13, side)
    want = one_resize(low, size)
    got = upsample_masks(low, size)
    assert got.dtype == torch.bool and got.shape == (13, *size)
    assert torch.equal(got, want)
    assert torch.equal(any_pixel(got), want.flatten(1).any(1))
    assert not got[0].any() and got.any()  # the test sees absent and present objects


def test_upsample_masks_of_no_objects():
    got = upsample_masks(torch.zeros(0, 8, 8), (20, 30))
    assert got.shape == (0, 20, 30) and any_pixel(got).shape == (0,)
