"""roi_align reproduces torchvision.ops.roi_align (sampling_ratio=-1, aligned=False)."""

from __future__ import annotations

import pytest
import torch

from sam3_core.modeling.ops import roi_align

tv_ops = pytest.importorskip("torchvision.ops")


def reference(features: torch.Tensor, boxes: list[torch.Tensor], size: int) -> torch.Tensor:
    """torchvision's RoI Align with the settings SAM 3 uses."""
    return tv_ops.roi_align(
        features, boxes, size, spatial_scale=1.0, sampling_ratio=-1, aligned=False
    )


BOXES = {
    "inside": [[2.0, 3.0, 10.5, 12.25], [0.0, 0.0, 16.0, 12.0]],
    "partly_outside": [[-3.0, -2.5, 5.0, 4.0], [10.0, 8.0, 22.0, 19.0], [-0.9, -0.9, 3.0, 2.0]],
    "fully_outside": [[20.0, 20.0, 30.0, 30.0], [-8.0, -8.0, -2.0, -1.5]],
    "tiny": [[4.2, 5.1, 4.3, 5.15], [7.0, 7.0, 7.0, 7.0], [15.5, 11.5, 15.9, 11.9]],
    "large": [[-10.0, -10.0, 40.0, 35.0], [0.5, 0.5, 15.5, 11.5]],
    "edges": [[14.6, 10.6, 16.0, 12.0], [0.0, 0.0, 1.0, 1.0], [15.0, 0.0, 17.0, 12.0]],
}


@pytest.mark.parametrize("case", sorted(BOXES))
@pytest.mark.parametrize("size", [1, 7])
def test_matches_torchvision(case: str, size: int) -> None:
    """Random features, hand-picked boxes: equal within 1e-5."""
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(1, 5, 12, 16, generator=gen)
    boxes = [torch.tensor(BOXES[case])]
    got = roi_align(features, boxes, size)
    assert got.shape == (len(BOXES[case]), 5, size, size)
    torch.testing.assert_close(got, reference(features, boxes, size), rtol=0, atol=1e-5)


def test_random_boxes_batch_of_two() -> None:
    """Many random boxes over two images with different counts (one image with none)."""
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(3, 8, 18, 23, generator=gen)
    boxes = []
    for count in (5, 0, 9):
        xy = torch.rand(count, 2, generator=gen) * 30 - 5
        wh = torch.rand(count, 2, generator=gen) * 20
        boxes.append(torch.cat([xy, xy + wh], dim=1))
    got = roi_align(features, boxes, 7)
    assert got.shape == (14, 8, 7, 7)
    torch.testing.assert_close(got, reference(features, boxes, 7), rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype: torch.dtype) -> None:
    """Half inputs compute in float32 and come back in their own dtype."""
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(2, 4, 10, 10, generator=gen).to(dtype)
    boxes = [torch.tensor([[1.0, 1.5, 8.0, 9.0]]), torch.tensor([[-2.0, 3.0, 6.0, 12.0]])]
    got = roi_align(features, [b.to(dtype) for b in boxes], 7)
    assert got.dtype == dtype
    want = reference(features.float(), [b.to(dtype).float() for b in boxes], 7)
    torch.testing.assert_close(got.float(), want.to(dtype).float(), rtol=0, atol=2e-2)


def test_gradient_and_empty() -> None:
    """Gradients reach the features; no boxes at all gives an empty result."""
    features = torch.randn(1, 3, 8, 8, requires_grad=True)
    roi_align(features, [torch.tensor([[1.0, 1.0, 6.0, 5.0]])], 4).sum().backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    empty = roi_align(features, [torch.zeros(0, 4)], 4)
    assert empty.shape == (0, 3, 4, 4)


def test_bad_inputs() -> None:
    """Wrong shapes raise ValueErrors that name the argument."""
    features = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match="one box tensor per image"):
        roi_align(features, [torch.zeros(1, 4)], 4)
    with pytest.raises(ValueError, match="boxes\\[1\\]"):
        roi_align(features, [torch.zeros(1, 4), torch.zeros(4)], 4)
    with pytest.raises(ValueError, match="features"):
        roi_align(features[0], [torch.zeros(1, 4)], 4)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(features, [torch.zeros(1, 4), torch.zeros(1, 4)], 0)
