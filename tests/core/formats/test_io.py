"""load_image conversions and errors, iter_image_files, read_stack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from sam3_core.formats.images import (
    ImageReadError,
    iter_image_files,
    load_image,
    normalize_percentile,
    read_stack,
)


def ramp(shape: tuple[int, ...], dtype: type, scale: float = 1.0) -> np.ndarray:
    """Deterministic varied pixels of the given shape and dtype."""
    values = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape) % 997
    return (values * scale).astype(dtype)


def check_rgb8(img: np.ndarray, hw: tuple[int, int]) -> None:
    """The predictors' input contract: uint8, HxWx3, contiguous."""
    assert img.dtype == np.uint8 and img.shape == (*hw, 3) and img.flags.c_contiguous


def test_uint8_rgb_kept() -> None:
    arr = ramp((5, 7, 3), np.uint8)
    out = load_image(arr)
    check_rgb8(out, (5, 7))
    assert np.array_equal(out, arr)


@pytest.mark.parametrize("shape", [(6, 9), (6, 9, 1)])
def test_gray_replicated(shape: tuple[int, ...]) -> None:
    arr = ramp(shape, np.uint8)
    out = load_image(arr)
    check_rgb8(out, (6, 9))
    for c in range(3):
        assert np.array_equal(out[..., c], arr.reshape(6, 9))


def test_rgba_drops_alpha() -> None:
    arr = ramp((4, 5, 4), np.uint8)
    assert np.array_equal(load_image(arr), arr[..., :3])
    pil = Image.fromarray(arr, mode="RGBA")
    assert np.array_equal(load_image(pil), arr[..., :3])


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint32, np.float32, np.float64])
def test_high_bit_depth_percentile(dtype: type) -> None:
    arr = ramp((40, 50), dtype, scale=60.0)
    out = load_image(arr)
    check_rgb8(out, (40, 50))
    assert np.array_equal(out[..., 0], normalize_percentile(arr))
    assert out.min() == 0 and out.max() == 255


def test_normalize_percentile_values() -> None:
    arr = np.linspace(0.0, 1000.0, 1001)
    out = normalize_percentile(arr, low=10.0, high=90.0)
    assert out[:101].max() == 0 and out[900:].min() == 255
    assert out[500] in (127, 128)
    assert np.array_equal(normalize_percentile(np.full((3, 3), 7.0)), np.zeros((3, 3), np.uint8))
    with_nan = normalize_percentile(np.array([np.nan, 0.0, 1.0, np.inf]), low=0.0, high=100.0)
    assert with_nan.tolist() == [0, 0, 255, 255]
    with pytest.raises(ValueError, match="percentiles"):
        normalize_percentile(arr, low=50.0, high=10.0)


def test_float_rgb_joint_normalisation() -> None:
    arr = np.zeros((4, 4, 3), np.float32)
    arr[..., 0] = 1.0
    out = load_image(arr)
    assert out[..., 0].min() == 255 and out[..., 1:].max() == 0


def test_multichannel_selection() -> None:
    arr = ramp((8, 10, 6), np.uint16, scale=50.0)
    arr[..., 5] *= 3
    with pytest.raises(ImageReadError, match="6 channels"):
        load_image(arr)
    gray = load_image(arr, channels=[2])
    assert np.array_equal(gray[..., 0], gray[..., 2])
    assert np.array_equal(gray[..., 0], normalize_percentile(arr[..., 2]))
    two = load_image(arr, channels=[1, 5])
    assert np.array_equal(two[..., 1], normalize_percentile(arr[..., 5]))
    assert two[..., 2].max() == 0
    rgb = load_image(arr, channels=(0, 1, 2))
    assert np.array_equal(rgb[..., 2], normalize_percentile(arr[..., 2]))
    with pytest.raises(ImageReadError, match="out of range"):
        load_image(arr, channels=[6])
    with pytest.raises(ImageReadError, match="1 to 3"):
        load_image(arr, channels=[0, 1, 2, 3])


def test_channel_first_two_channels() -> None:
    arr = ramp((2, 12, 14), np.uint16, scale=30.0)
    out = load_image(arr)
    check_rgb8(out, (12, 14))
    assert np.array_equal(out[..., 0], normalize_percentile(arr[0]))
    assert np.array_equal(out[..., 1], normalize_percentile(arr[1]))
    assert out[..., 2].max() == 0


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (5, 6, 7, 8, 9)])
def test_not_an_image(shape: tuple[int, ...]) -> None:
    with pytest.raises(ImageReadError, match="cannot be an image"):
        load_image(np.zeros(shape, np.uint8))


def test_zero_size() -> None:
    with pytest.raises(ImageReadError, match="empty"):
        load_image(np.zeros((0, 5, 3), np.uint8))


def test_tiff_round_trip(tmp_path: Path) -> None:
    gray16 = ramp((20, 30), np.uint16, scale=40.0)
    tifffile.imwrite(tmp_path / "gray.tif", gray16)
    out = load_image(tmp_path / "gray.tif")
    assert np.array_equal(out[..., 1], normalize_percentile(gray16))
    rgb = ramp((20, 30, 3), np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tiff", rgb, photometric="rgb")
    assert np.array_equal(load_image(str(tmp_path / "rgb.tiff")), rgb)
    stack = ramp((3, 20, 30), np.uint16, scale=10.0)
    tifffile.imwrite(tmp_path / "cells.ome.tif", stack, metadata={"axes": "CYX"})
    out = load_image(tmp_path / "cells.ome.tif", channels=[2, 0])
    assert np.array_equal(out[..., 0], normalize_percentile(stack[2]))
    assert np.array_equal(out[..., 1], normalize_percentile(stack[0]))


def test_png_jpeg_and_exif(tmp_path: Path) -> None:
    rgb = ramp((16, 24, 3), np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(load_image(tmp_path / "a.png"), rgb)
    Image.fromarray(ramp((16, 24), np.uint8)).save(tmp_path / "g.png")
    check_rgb8(load_image(tmp_path / "g.png"), (16, 24))
    Image.fromarray(ramp((16, 24), np.uint16, scale=60.0)).save(tmp_path / "g16.png")
    check_rgb8(load_image(tmp_path / "g16.png"), (16, 24))
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    jpg = load_image(tmp_path / "a.jpg")
    check_rgb8(jpg, (16, 24))
    assert np.abs(jpg.astype(int) - rgb).mean() < 20
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif)
    check_rgb8(load_image(tmp_path / "rotated.jpg"), (24, 16))
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.gif")
    check_rgb8(load_image(tmp_path / "palette.gif"), (16, 24))


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="not a file"):
        load_image(tmp_path)
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    with pytest.raises(ImageReadError, match=r"junk\.png.*Supported formats"):
        load_image(tmp_path / "junk.png")
    Image.fromarray(ramp((64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match=r"cut\.png"):
        load_image(tmp_path / "cut.png")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00" + b"\xff" * 20)
    with pytest.raises(ImageReadError, match=r"bad\.tif.*no pixels"):
        load_image(tmp_path / "bad.tif")
    with pytest.raises(TypeError, match="numpy array"):
        load_image(42)  # type: ignore[arg-type]
    assert issubclass(ImageReadError, ValueError)


def test_iter_image_files(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.tif", "notes.txt", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    names = [p.name for p in iter_image_files(tmp_path)]
    assert names == ["a.JPG", "b.png", "c.tif"]
    assert [p.name for p in iter_image_files(tmp_path, recursive=True)][-1] == "d.png"
    assert iter_image_files(tmp_path / "notes.txt") == [tmp_path / "notes.txt"]
    assert [p.name for p in iter_image_files(str(tmp_path / "*.png"))] == ["b.png"]
    assert [p.name for p in iter_image_files(str(tmp_path / "**" / "*.png"))] == ["b.png", "d.png"]
    with pytest.raises(ImageReadError, match="not found"):
        iter_image_files(tmp_path / "nothing")


def test_read_stack(tmp_path: Path) -> None:
    stack = ramp((4, 10, 12), np.uint16)
    tifffile.imwrite(tmp_path / "raw.tif", stack, photometric="minisblack")
    lazy = read_stack(tmp_path / "raw.tif")
    assert isinstance(lazy, np.memmap) and np.array_equal(np.asarray(lazy), stack)
    tifffile.imwrite(tmp_path / "packed.tif", stack, photometric="minisblack", compression="zlib")
    assert np.array_equal(np.asarray(read_stack(tmp_path / "packed.tif")[1]), stack[1])
    Image.fromarray(ramp((4, 4, 3), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(ImageReadError, match="not a TIFF"):
        read_stack(tmp_path / "x.png")
