"""The numpy brush RLE writes exactly the bytes of label-studio-sdk's pure-Python encoder."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter import brush as sdk

from sam3_core.formats import labelstudio_rle as brush_rle


def assert_same(mask: np.ndarray) -> list[int]:
    """Our bytes equal the SDK's for `mask`; the SDK's decoder reads them back to `mask`."""
    ours = brush_rle.mask2rle(mask)
    assert type(ours) is list and all(type(v) is int for v in ours)
    assert ours == sdk.mask2rle(mask)
    decoded = sdk.decode_rle(ours).reshape(*mask.shape, 4)
    assert (decoded == mask[..., None]).all()
    return ours


@pytest.mark.parametrize("shape", [(1, 1), (1, 2), (2, 1), (3, 5), (7, 13), (40, 61), (97, 33)])
@pytest.mark.parametrize("density", [0.0, 0.002, 0.1, 0.5, 0.9, 1.0])
def test_random_binary_masks_match_the_sdk(shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    assert_same(((rng.random(shape) < density) * 255).astype(np.uint8))


def test_blobs_single_pixels_and_every_byte_value():
    yy, xx = np.mgrid[:120, :171]  # odd width
    blobs = ((yy - 50) ** 2 / 900 + (xx - 60) ** 2 / 1600 < 1) | (
        (yy - 90) ** 2 + (xx - 140) ** 2 < 300
    )
    assert_same(blobs.astype(np.uint8) * 255)
    for y, x in [(0, 0), (0, 170), (119, 0), (119, 170), (60, 85)]:
        single = np.zeros((120, 171), np.uint8)
        single[y, x] = 255
        assert_same(single)
    rng = np.random.default_rng(1)
    assert_same(rng.integers(0, 256, (37, 29), dtype=np.uint8))  # any byte, short runs
    assert_same(np.repeat(np.arange(256, dtype=np.uint8), 5).reshape(64, 20))
    assert_same(rng.integers(0, 3, (31, 17)).astype(int))  # the SDK also takes int masks


@pytest.mark.parametrize("pixels", [16383, 16384, 16385, 32768, 32769, 40000, 100_001])
def test_runs_over_the_16_bit_limit_are_split_like_the_sdk(pixels):
    # A run of p pixels is 4p values; 65,536 values (16,384 pixels) is one token's limit.
    for fill in (0, 255):
        mask = np.full((1, pixels + 3), fill, np.uint8)
        mask[0, -3:] = 255 - fill  # a short run after the long one
        assert_same(mask)
    assert_same(np.zeros((300, 301), np.uint8))  # all zero: 361,200 values in one run
    assert_same(np.full((300, 301), 255, np.uint8))


def test_a_stream_ending_on_a_byte_gets_the_sdks_extra_zero_byte():
    # Header 53 bits + one 19-bit token (a run of 20 values) = 72 bits: 9 bytes, then a zero.
    rle = assert_same(np.zeros((1, 5), np.uint8))
    assert len(rle) == 10 and rle[-1] == 0


@pytest.mark.parametrize("length", [1, 2, 8, 9, 16, 17, 256, 257, 65536, 65537, 131072, 131073])
def test_one_dimensional_runs_of_every_class_boundary(length):
    # Lengths a mask (4 values per pixel) never makes: singles, 9, 17, 257, 65537.
    array = np.concatenate([np.full(length, 7), [1, 2, 2], np.full(length, 200), [9]])
    assert brush_rle.encode_rle(array.astype(np.uint8)) == sdk.encode_rle(array)
    assert (sdk.decode_rle(brush_rle.encode_rle(array.astype(np.uint8))) == array).all()


@pytest.mark.parametrize(
    "mask, message",
    [
        (np.zeros((2, 3, 4), np.uint8), "must be 2-D"),
        (np.zeros((3, 3), bool), r"mask.astype\(np.uint8\) \* 255"),
        (np.zeros((3, 3), np.float32), "integers 0..255"),
        (np.full((3, 3), 256), "0..255"),
        (np.full((3, 3), -1), "0..255"),
        (np.zeros((0, 5), np.uint8), "at least one pixel"),
    ],
)
def test_bad_masks_are_refused_with_a_message(mask, message):
    with pytest.raises(ValueError, match=message):
        brush_rle.mask2rle(mask)


def test_a_mask_too_large_for_the_32_bit_count_is_refused():
    huge = np.broadcast_to(np.uint8(0), (1 << 15, 1 << 15))  # 2**30 pixels, no memory used
    with pytest.raises(ValueError, match="under 2\\*\\*30 pixels"):
        brush_rle.mask2rle(huge)
