"""Exact shortcuts in our model equal the plain computation they replace (fp32, rounding only)."""

from __future__ import annotations

import itertools

import torch

from sam3_core.modeling.layers import apply_rope, fused_linear_dtypes, linear_activation
from sam3_core.modeling.mask_head import MaskLogits
from sam3_core.modeling.memory import memory_rope
from tests.core.helpers import tiny_model


def test_tracker_heads_fold_into_the_neck() -> None:
    """encode_image (conv_s0/conv_s1 folded into the neck's 3x3 convs) equals neck, then 1x1."""
    model = tiny_model(3).eval()
    vit = torch.randn(2, 64, 8, 8, generator=torch.Generator().manual_seed(0))
    tracker = model.tracker_model
    with torch.no_grad():
        folded = tracker.encode_image(model.tracker_neck, vit)
        fpn, pos = model.tracker_neck(vit, num_levels=3)
        plain = tracker.prepare_image_features(fpn, pos)
    for got, want in zip(folded.high_res_feats, plain.high_res_feats):
        assert got.shape == want.shape and want.abs().amax() > 1.0
        torch.testing.assert_close(got, want, rtol=0, atol=2e-5)
    torch.testing.assert_close(folded.image_embed, plain.image_embed, rtol=0, atol=0)
    torch.testing.assert_close(folded.no_memory_tokens, plain.no_memory_tokens, rtol=0, atol=0)


def test_memory_rope_rotates_maps_and_leaves_pointers() -> None:
    """Every memory map gets the image grid's rotation; object-pointer tokens pass unchanged."""
    h, w, dim, maps, pointers = 3, 4, 8, 2, 5
    x = torch.randn(1, 2, maps * h * w + pointers, dim, generator=torch.Generator().manual_seed(1))
    out = apply_rope(x, memory_rope(h, w, dim, 10000.0, torch.device("cpu"), maps, pointers))
    assert torch.equal(out[..., maps * h * w :, :], x[..., maps * h * w :, :])
    grid = memory_rope(h, w, dim, 10000.0, "cpu")
    for m in range(maps):
        tokens = slice(m * h * w, (m + 1) * h * w)
        assert torch.equal(out[..., tokens, :], apply_rope(x[..., tokens, :], grid))
    # token (row 1, col 2), x-frequency pair 0: rotated by angle 2 (its x position)
    pair = x[0, 0, 1 * w + 2, :2]
    c, s = torch.cos(torch.tensor(2.0)), torch.sin(torch.tensor(2.0))
    want = torch.stack([pair[0] * c - pair[1] * s, pair[1] * c + pair[0] * s])
    torch.testing.assert_close(out[0, 0, 1 * w + 2, :2], want)


def test_mask_logits_select_equals_the_full_maps() -> None:
    """Factored mask logits: `select` gives the same maps as `all` for the pairs asked."""
    gen = torch.Generator().manual_seed(2)
    pixels = torch.randn(3, 16, 12, 12, generator=gen).contiguous(memory_format=torch.channels_last)
    masks = MaskLogits(
        torch.randn(3, 7, 16, generator=gen), torch.randn(3, 7, generator=gen), pixels
    )
    full = masks.all()
    assert full.shape == masks.shape == (3, 7, 12, 12)
    want = torch.einsum("bqc,bchw->bqhw", masks.embed, pixels) + masks.bias[..., None, None]
    torch.testing.assert_close(full, want)
    rows, queries = torch.tensor([2, 0, 2, 1]), torch.tensor([6, 0, 1, 6])
    torch.testing.assert_close(masks.select(rows, queries), full[rows, queries])
    assert masks.select(rows[:0], queries[:0]).shape == (0, 12, 12)
    assert torch.equal(MaskLogits.dense(full).all(), full)
    torch.testing.assert_close(masks[1:].all(), full[1:])


def test_fused_linear_activation_equals_linear_then_activation() -> None:
    """oneDNN's fused bias + activation (large outputs) gives F.linear then relu/gelu: fp32,
    bf16 autocast, N-D inputs; small outputs and autograd take the plain ops."""
    gen = torch.Generator().manual_seed(3)
    linear = torch.nn.Linear(32, 48)
    big, small = torch.randn(2, 40, 30, 32, generator=gen), torch.randn(3, 32, generator=gen)
    for x, (name, act) in itertools.product(
        (big, small), (("relu", torch.relu), ("gelu", torch.nn.functional.gelu))
    ):
        with torch.no_grad():
            got = linear_activation(x, linear, name)
            torch.testing.assert_close(got, act(linear(x)), rtol=1e-5, atol=1e-5)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got, want = linear_activation(x, linear, name), act(linear(x))
            assert got.dtype == want.dtype == torch.bfloat16
            torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
        trained = linear_activation(x, linear, name)
        assert trained.requires_grad
        torch.testing.assert_close(trained, act(linear(x)))


def test_fused_kernels_follow_the_cpu_and_the_switch(monkeypatch) -> None:
    """bf16 is fused only where oneDNN has bf16 kernels (else it refuses the primitive, as on
    AVX2-only CPUs); SAM3_FUSED_KERNELS=0 turns the fused kernels off."""
    monkeypatch.setenv("SAM3_FUSED_KERNELS", "1")
    dtypes = fused_linear_dtypes()
    assert torch.float32 in dtypes
    assert (torch.bfloat16 in dtypes) == torch.ops.mkldnn._is_mkldnn_bf16_supported()
    monkeypatch.setenv("SAM3_FUSED_KERNELS", "0")
    assert fused_linear_dtypes() == ()


def test_box_bias_same_with_and_without_autograd() -> None:
    """The decoder's box bias, written in place for inference, equals the autograd path."""
    decoder = tiny_model(5).detector_model.detr_decoder
    boxes = torch.rand(2, 8, 4, generator=torch.Generator().manual_seed(4)) * 0.5 + 0.25
    trained = decoder._box_bias(boxes, 6, 5)
    with torch.no_grad():
        fast = decoder._box_bias(boxes, 6, 5)
    assert trained.requires_grad and fast.shape == trained.shape == (2, 4, 9, 30)
    assert torch.equal(fast[:, :, 0], torch.zeros_like(fast[:, :, 0]))
    torch.testing.assert_close(fast, trained.detach(), rtol=0, atol=0)
    with torch.no_grad():  # one box set shared by 3 rows: computed once, expanded
        shared = decoder._box_bias(boxes[:1].expand(3, -1, -1), 6, 5)
    assert shared.shape == (3, 4, 9, 30) and shared.stride(0) == 0
    torch.testing.assert_close(shared, fast[:1].expand(3, -1, -1, -1), rtol=0, atol=0)
